package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrBackupUnsupported: Backup copies an SQLite database; a PostgreSQL database is backed up
// with PostgreSQL's own tools.
var ErrBackupUnsupported = errors.New("otpd backup copies the SQLite file; back up PostgreSQL with pg_dump " +
	"(e.g. pg_dump --format=custom --file=otpd.dump \"$OTPD_DATABASE_URL\") or your provider's snapshots")

// Backup writes a consistent copy of the SQLite database to path with VACUUM INTO: one read
// transaction sees the database as of one commit, WAL contents included, while writers go on.
// The copy is a plain database file (no -wal), created with mode 0600 because it holds the same
// sealed secrets and hashes as the original. Backup never overwrites: an existing path is an
// error. On PostgreSQL it returns ErrBackupUnsupported.
func (s *Store) Backup(ctx context.Context, path string) error {
	if s.dialect != DialectSQLite {
		return ErrBackupUnsupported
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("sqlstore: backup: %w", err)
	}
	// O_EXCL refuses an existing file without a window in which another one could appear;
	// VACUUM INTO accepts the empty file and keeps its mode.
	f, err := os.OpenFile(abs, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("sqlstore: backup: %s already exists; otpd does not overwrite a backup", path)
		}
		return fmt.Errorf("sqlstore: backup: %w", err)
	}
	f.Close()
	ok := false
	defer func() {
		if !ok {
			os.Remove(abs)
		}
	}()
	if err := s.vacuumInto(ctx, abs); err != nil {
		return fmt.Errorf("sqlstore: backup: %w", err)
	}
	// VACUUM INTO does not sync its output: do it, so a backup that was reported is on disk.
	if f, err = os.OpenFile(abs, os.O_RDWR, 0); err != nil {
		return fmt.Errorf("sqlstore: backup: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sqlstore: backup: sync: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sqlstore: backup: %w", err)
	}
	ok = true
	return nil
}

// vacuumInto runs VACUUM INTO dest on a connection of its own. Not on the write pool: VACUUM
// cannot run inside a transaction, and every statement there may be part of a group commit. Not
// on the read pool either: query_only refuses VACUUM INTO's writes to the new file, and turning it
// off on a pooled connection risks handing that connection back writable.
func (s *Store) vacuumInto(ctx context.Context, dest string) error {
	var seq int
	var name, file string
	if err := s.r.db.QueryRowContext(ctx, `PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		return fmt.Errorf("locate the database file: %w", err)
	}
	if name != "main" || file == "" {
		return fmt.Errorf("locate the database file: got %q", name)
	}
	db, err := sql.Open("sqlite", file+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// The destination is a bound parameter, never spliced into the text; it is absolute, so
	// SQLite does not read it as a "file:" URI.
	_, err = db.ExecContext(ctx, `VACUUM INTO $1`, dest)
	return err
}
