package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/config"
)

// loadConfig parses the shared server flags of a command.
func loadConfig(e *env, name string, args []string, extra func(fs *flag.FlagSet)) (config.Config, []string, error) {
	fs := flag.NewFlagSet("otpd "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	if extra != nil {
		extra(fs)
	}
	c, rest, err := config.Load(fs, args, e.vars)
	if err != nil {
		return c, nil, err
	}
	return c, rest, c.Validate()
}

func cmdServe(ctx context.Context, e *env, args []string) error {
	c, rest, err := loadConfig(e, "serve", args, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, rest[0])
	}
	log := app.NewLogger(c, e.stderr)
	a, err := app.Open(ctx, c, log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	announceBootstrap(e.stdout, c, a)
	if c.LogProviderOn() {
		log.Warn("the log delivery provider is on: messages go to the development inbox (GET /v1/dev/messages), not to real recipients")
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "otpd %s listening on http://%s\n", version, ln.Addr())
	return a.Serve(ctx, ln)
}

func cmdMigrate(ctx context.Context, e *env, args []string) error {
	var status *bool
	c, rest, err := loadConfig(e, "migrate", args, func(fs *flag.FlagSet) {
		status = fs.Bool("status", false, "show the applied migrations instead of applying")
	})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, rest[0])
	}
	log := app.NewLogger(c, e.stderr)
	if *status {
		return app.MigrationStatus(ctx, c, e.stdout)
	}
	a, err := app.Open(ctx, c, log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	announceBootstrap(e.stdout, c, a)
	fmt.Fprintln(e.stdout, "database is up to date")
	return nil
}

// announceBootstrap tells the operator that this start created the default tenant. The admin
// key is printed (once, to w and never to the log) only when otpd generated it: a key the
// operator set in OTPD_BOOTSTRAP_API_KEY is theirs already, and echoing it would only copy a
// secret into terminal scrollback and container logs.
func announceBootstrap(w io.Writer, c config.Config, a *app.App) {
	switch {
	case a.AdminKey == "":
	case c.BootstrapAPIKey != "":
		fmt.Fprintf(w, "\nCreated the default tenant. Its admin API key is the one you set in OTPD_BOOTSTRAP_API_KEY.\n\n")
	default:
		fmt.Fprintf(w, "\nCreated the default tenant. Its admin API key (shown once, keep it safe):\n\n    %s\n\n", a.AdminKey)
	}
}

func cmdConfig(ctx context.Context, e *env, args []string) error {
	c, rest, err := loadConfig(e, "config", args, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, rest[0])
	}
	b, err := c.Masked().YAML()
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(b)
	return err
}
