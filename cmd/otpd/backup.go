package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/otpd/otpd/internal/app"
)

// cmdBackup copies the SQLite database to a new file: a consistent snapshot (VACUUM INTO) taken
// while a server may keep running on the same file.
func cmdBackup(ctx context.Context, e *env, args []string) error {
	c, rest, err := loadConfig(e, "backup", args, nil)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if c.Postgres() {
		// Before the config's verdict: a PostgreSQL operator needs this answer, not a complaint
		// about the master key that a backup does not use.
		return app.Backup(ctx, c, "")
	}
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: want one FILE (a new file; otpd does not overwrite)", errUsage)
	}
	if err := app.Backup(ctx, c, rest[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "backed up %s to %s\n"+
		"Its secrets open only with this deployment's master key (%s or OTPD_MASTER_KEY): keep a copy of the key, apart from the backup.\n",
		c.DSN(), rest[0], c.MasterKeyFile())
	return nil
}
