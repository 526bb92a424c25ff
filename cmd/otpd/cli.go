package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/otpd/otpd/internal/api"
	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/client"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
)

// target is where operator commands go: a running server, or the local database in process.
type target struct {
	cli   *client.Client
	close func()
}

// clientFlags adds the flags every operator command shares and returns a connector.
func clientFlags(e *env, fs *flag.FlagSet) func(ctx context.Context) (*target, error) {
	server := fs.String("server", lookup(e.vars, "OTPD_SERVER"), "`URL` of a running otpd (env OTPD_SERVER); without it, work on the local database")
	key := fs.String("api-key", lookup(e.vars, "OTPD_API_KEY"), "API `key` for --server (env OTPD_API_KEY)")
	tenant := fs.String("tenant", engine.DefaultTenantName, "tenant `name` for local mode")
	// The server flags select the local database.
	cfgFile := fs.String("config", "", "YAML configuration `file` for local mode")
	dataDir := fs.String("data-dir", "", "data `directory` for local mode (default ./otpd-data)")
	dbURL := fs.String("database-url", "", "`postgres://…` for local mode")
	local := func() (config.Config, error) {
		var args []string
		for n, v := range map[string]string{"config": *cfgFile, "data-dir": *dataDir, "database-url": *dbURL} {
			if v != "" {
				args = append(args, "--"+n+"="+v)
			}
		}
		sub := flag.NewFlagSet("", flag.ContinueOnError)
		sub.SetOutput(io.Discard)
		c, _, err := config.Load(sub, args, e.vars)
		if err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	return func(ctx context.Context) (*target, error) {
		if *server != "" {
			if *key == "" {
				return nil, fmt.Errorf("%w: --server needs --api-key (or OTPD_API_KEY)", errUsage)
			}
			return &target{cli: client.New(*server, *key), close: func() {}}, nil
		}
		c, err := local()
		if err != nil {
			return nil, err
		}
		c.LogLevel = "warn"
		a, err := app.Open(ctx, c, app.NewLogger(c, e.stderr), app.Options{})
		if err != nil {
			return nil, err
		}
		announceBootstrap(e.stderr, c, a)
		t, err := a.Engine.TenantByName(ctx, *tenant)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("tenant %q: %w", *tenant, err)
		}
		p := engine.Principal{TenantID: t.ID, Role: store.RoleAdmin}
		cli := &client.Client{BaseURL: "http://local", HTTP: &http.Client{Transport: client.HandlerTransport{
			Handler: a.API,
			Prepare: func(r *http.Request) *http.Request { return r.WithContext(api.WithPrincipal(r.Context(), p)) },
		}}}
		return &target{cli: cli, close: func() { a.Close() }}, nil
	}
}

func lookup(vars []string, key string) string {
	for _, kv := range vars {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// subcommand dispatches "otpd <noun> <verb> …".
type verb struct {
	name, args, summary string
	flags               func(fs *flag.FlagSet) func(positional []string) (method, path string, body any, err error)
}

func runVerbs(ctx context.Context, e *env, noun string, verbs []verb, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(e.stdout, "usage: otpd %s <command> [flags]\n\nCommands:\n", noun)
		for _, v := range verbs {
			fmt.Fprintf(e.stdout, "  %-8s %-22s %s\n", v.name, v.args, v.summary)
		}
		fmt.Fprintf(e.stdout, "\nWithout --server the command works on the local database (--data-dir, --database-url).\nRun 'otpd %s <command> --help' for flags.\n", noun)
		if len(args) == 0 {
			return fmt.Errorf("%w: missing command", errUsage)
		}
		return nil
	}
	for _, v := range verbs {
		if v.name != args[0] {
			continue
		}
		fs := flag.NewFlagSet("otpd "+noun+" "+v.name, flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		fs.Usage = func() {
			fmt.Fprintf(e.stderr, "usage: otpd %s %s %s\n\n%s\n\nFlags:\n", noun, v.name, v.args, v.summary)
			fs.PrintDefaults()
		}
		build := v.flags(fs)
		connect := clientFlags(e, fs)
		if err := fs.Parse(interleave(fs, args[1:])); err != nil {
			return err
		}
		method, path, body, err := build(fs.Args())
		if err != nil {
			return err
		}
		t, err := connect(ctx)
		if err != nil {
			return err
		}
		defer t.close()
		raw, err := t.cli.Do(ctx, method, path, body, nil)
		if err != nil {
			return err
		}
		return printJSON(e.stdout, raw)
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// interleave moves positional arguments after the flags, so "verify check ID --code 1" works
// like "verify check --code 1 ID".
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				continue
			}
			if i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		}
	}
	return append(flags, pos...)
}

func printJSON(w io.Writer, raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		fmt.Fprintln(w, "ok")
		return nil
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		_, err = w.Write(raw)
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func need(pos []string, n int, what string) error {
	if len(pos) != n {
		return fmt.Errorf("%w: want %s", errUsage, what)
	}
	return nil
}

func cmdApp(ctx context.Context, e *env, args []string) error {
	return runVerbs(ctx, e, "app", []verb{
		{"create", "--name NAME", "create an application; prints its API key and client secret once",
			func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
				name := fs.String("name", "", "application `name`")
				return func(pos []string) (string, string, any, error) {
					if *name == "" && len(pos) == 1 {
						*name = pos[0]
					} else if err := need(pos, 0, "no arguments besides --name"); err != nil {
						return "", "", nil, err
					}
					return "POST", "/v1/applications", map[string]string{"name": *name}, nil
				}
			}},
		{"list", "", "list applications", noArgs("GET", "/v1/applications")},
		{"delete", "ID", "delete an application and revoke its keys", oneID("DELETE", "/v1/applications/")},
	}, args)
}

func noArgs(method, path string) func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
	return func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
		return func(pos []string) (string, string, any, error) {
			return method, path, nil, need(pos, 0, "no arguments")
		}
	}
}

func oneID(method, prefix string) func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
	return idAction(method, prefix, "")
}

// idAction builds prefix + ID + suffix from the one positional argument.
func idAction(method, prefix, suffix string) func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
	return func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
		return func(pos []string) (string, string, any, error) {
			if err := need(pos, 1, "one ID"); err != nil {
				return "", "", nil, err
			}
			return method, prefix + url.PathEscape(pos[0]) + suffix, nil, nil
		}
	}
}

// userFields registers the user attribute flags; only flags given end up in the body.
func userFields(fs *flag.FlagSet) func() map[string]any {
	names := []string{"login", "email", "phone", "external-id", "first-name", "last-name", "language", "role"}
	vals := map[string]*string{}
	for _, n := range names {
		vals[n] = fs.String(n, "", "user "+strings.ReplaceAll(n, "-", " "))
	}
	enabled := fs.String("enabled", "", "`true|false`")
	return func() map[string]any {
		body := map[string]any{}
		fs.Visit(func(f *flag.Flag) {
			if v, ok := vals[f.Name]; ok {
				body[strings.ReplaceAll(f.Name, "-", "_")] = *v
			}
			if f.Name == "enabled" {
				b, err := strconv.ParseBool(*enabled)
				if err == nil {
					body["enabled"] = b
				} else {
					body["enabled"] = *enabled // the server explains the type error
				}
			}
		})
		return body
	}
}

func cmdUser(ctx context.Context, e *env, args []string) error {
	return runVerbs(ctx, e, "user", []verb{
		{"create", "--login L [--email …]", "create a user",
			func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
				body := userFields(fs)
				return func(pos []string) (string, string, any, error) {
					return "POST", "/v1/users", body(), need(pos, 0, "flags only")
				}
			}},
		{"get", "ID", "show a user", oneID("GET", "/v1/users/")},
		{"list", "", "list users", func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			limit := fs.Int("limit", 50, "page `size` (1–500)")
			cursor := fs.String("cursor", "", "`cursor` from the previous page")
			return func(pos []string) (string, string, any, error) {
				q := url.Values{"limit": {strconv.Itoa(*limit)}}
				if *cursor != "" {
					q.Set("cursor", *cursor)
				}
				return "GET", "/v1/users?" + q.Encode(), nil, need(pos, 0, "no arguments")
			}
		}},
		{"update", "ID [--email …]", "change a user's attributes",
			func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
				body := userFields(fs)
				return func(pos []string) (string, string, any, error) {
					if err := need(pos, 1, "one ID"); err != nil {
						return "", "", nil, err
					}
					return "PATCH", "/v1/users/" + url.PathEscape(pos[0]), body(), nil
				}
			}},
		{"delete", "ID", "delete a user", oneID("DELETE", "/v1/users/")},
	}, args)
}

func cmdVerify(ctx context.Context, e *env, args []string) error {
	return runVerbs(ctx, e, "verify", []verb{
		{"start", "--channel C --to R", "start a verification (channel none prints the code)",
			func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
				channel := fs.String("channel", "email", "`channel`: none, email, sms, viber, voice, whatsapp")
				to := fs.String("to", "", "`recipient` (email address or +E.164 phone)")
				length := fs.Int("code-length", 0, "code `digits` (6–10)")
				ttl := fs.Int("ttl", 0, "lifetime in `seconds` (30–600)")
				tries := fs.Int("max-attempts", 0, "try `budget` (1–10)")
				purpose := fs.String("purpose", "", "`purpose` the code is bound to")
				return func(pos []string) (string, string, any, error) {
					body := map[string]any{"channel": *channel, "to": *to}
					for k, v := range map[string]int{"code_length": *length, "ttl_seconds": *ttl, "max_attempts": *tries} {
						if v != 0 {
							body[k] = v
						}
					}
					if *purpose != "" {
						body["purpose"] = *purpose
					}
					return "POST", "/v1/verifications", body, need(pos, 0, "flags only")
				}
			}},
		{"check", "ID CODE", "check a code", func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			code := fs.String("code", "", "the `code` (or give it as the second argument)")
			return func(pos []string) (string, string, any, error) {
				if *code == "" && len(pos) == 2 {
					*code, pos = pos[1], pos[:1]
				}
				if err := need(pos, 1, "ID and CODE"); err != nil {
					return "", "", nil, err
				}
				return "POST", "/v1/verifications/" + url.PathEscape(pos[0]) + "/check", map[string]string{"code": *code}, nil
			}
		}},
		{"get", "ID", "show a verification", oneID("GET", "/v1/verifications/")},
		{"resend", "ID", "send a new code (the try budget is not refilled)", idAction("POST", "/v1/verifications/", "/resend")},
		{"cancel", "ID", "cancel a pending verification", idAction("POST", "/v1/verifications/", "/cancel")},
		{"list", "[--status S]", "list verifications, newest first", func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			status := fs.String("status", "", "filter by `status`")
			to := fs.String("to", "", "filter by `recipient`")
			channel := fs.String("channel", "", "filter by `channel`")
			limit := fs.Int("limit", 50, "page `size` (1–500)")
			cursor := fs.String("cursor", "", "`cursor` from the previous page")
			return func(pos []string) (string, string, any, error) {
				q := url.Values{"limit": {strconv.Itoa(*limit)}}
				for k, v := range map[string]string{"status": *status, "to": *to, "channel": *channel, "cursor": *cursor} {
					if v != "" {
						q.Set(k, v)
					}
				}
				return "GET", "/v1/verifications?" + q.Encode(), nil, need(pos, 0, "no arguments")
			}
		}},
	}, args)
}

func cmdTenant(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(e.stdout, "usage: otpd tenant create NAME | otpd tenant list   (local database only: --data-dir, --database-url)")
		if len(args) == 0 {
			return fmt.Errorf("%w: missing command", errUsage)
		}
		return nil
	}
	verbName := args[0]
	c, rest, err := loadConfig(e, "tenant "+verbName, args[1:], nil)
	if err != nil {
		return err
	}
	c.LogLevel = "warn"
	a, err := app.Open(ctx, c, app.NewLogger(c, e.stderr), app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	announceBootstrap(e.stderr, c, a)
	switch verbName {
	case "create":
		if len(rest) != 1 {
			return fmt.Errorf("%w: want one NAME", errUsage)
		}
		id, key, err := a.Engine.CreateTenant(ctx, rest[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "tenant %s created (id %s)\nadmin API key (shown once, keep it safe):\n    %s\n", rest[0], id, key)
		return nil
	case "list":
		ts, err := a.Engine.ListTenants(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tCREATED")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, t.CreatedAt.Format("2006-01-02 15:04:05Z"))
		}
		return tw.Flush()
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, verbName)
}
