// Command otpd is a self-hosted one-time-password server and its operator CLI.
//
//	otpd serve            run the server (embedded SQLite in ./otpd-data by default)
//	otpd migrate          apply database migrations and exit
//	otpd config           print the effective configuration, secrets masked
//	otpd version          print the version
//	otpd keygen           print a new master key
//	otpd tenant|app|user|verify …   operator commands (see otpd help)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/otpd/otpd/internal/keys"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	name, usage, summary string
	run                  func(ctx context.Context, e *env, args []string) error
}

// env is what a command may touch; tests pass their own.
type env struct {
	vars           []string
	stdin          io.Reader
	stdout, stderr io.Writer
}

func commands() []command {
	return []command{
		{"serve", "otpd serve [flags]", "run the server", cmdServe},
		{"migrate", "otpd migrate [--status] [flags]", "apply database migrations and exit", cmdMigrate},
		{"config", "otpd config [flags]", "print the effective configuration (secrets masked)", cmdConfig},
		{"backup", "otpd backup [flags] FILE", "copy the SQLite database to a new FILE, also while otpd runs", cmdBackup},
		{"version", "otpd version", "print the version", cmdVersion},
		{"keygen", "otpd keygen", "print a new random master key (for OTPD_MASTER_KEY)", cmdKeygen},
		{"tenant", "otpd tenant create|list …", "manage tenants (local database only)", cmdTenant},
		{"app", "otpd app create|list|delete …", "manage applications (API clients)", cmdApp},
		{"user", "otpd user create|get|list|update|delete …", "manage users", cmdUser},
		{"verify", "otpd verify start|check|get|resend|cancel|list …", "run verifications", cmdVerify},
		{"provider", "otpd provider list|get|add|test|delete …", "manage SMS, Viber and voice providers", cmdProvider},
		{"device", "otpd device enroll|list|get|verify|challenge|resync|unlock|disable|delete …", "manage users' OTP devices", cmdDevice},
		{"iam", "otpd iam show|set|clear APP_ID …", "an application's IAM introspection settings (Haventec)", cmdIAM},
		{"template", "otpd template list|get|create|update|approve|reject|delete …", "manage message templates (BSG) and their moderation", cmdTemplate},
		{"audit", "otpd audit list [--action A] [--limit N] [--cursor C]", "read the tenant's audit log, newest first", cmdAudit},
	}
}

// errUsage marks errors that should be followed by usage help; exit status 2.
var errUsage = errors.New("usage")

func run(ctx context.Context, args, vars []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{vars: vars, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			for _, c := range commands() {
				if c.name == args[1] {
					return runCommand(ctx, e, c, []string{"--help"})
				}
			}
		}
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return runCommand(ctx, e, c, args[1:])
		}
	}
	fmt.Fprintf(stderr, "otpd: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func runCommand(ctx context.Context, e *env, c command, args []string) int {
	err := c.run(ctx, e, args)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "otpd %s: %v\nusage: %s\n", c.name, err, c.usage)
		return 2
	}
	fmt.Fprintf(e.stderr, "otpd %s: %v\n", c.name, err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "otpd — self-hosted one-time-password server (%s)\n\nCommands:\n", version)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'otpd help <command>' or 'otpd <command> --help' for details.\n")
}

func cmdVersion(ctx context.Context, e *env, args []string) error {
	fmt.Fprintf(e.stdout, "otpd %s\n", version)
	return nil
}

func cmdKeygen(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: keygen takes no arguments", errUsage)
	}
	k, err := keys.GenerateMasterKey()
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, keys.EncodeMasterKey(k))
	return nil
}
