package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

// cmdIAM manages an application's IAM introspection settings (the Haventec surface): where otpd
// asks the customer's IAM whether a requestor token is active, with which client credentials,
// and which role the token must carry.
//
//	otpd iam show APP_ID
//	otpd iam set APP_ID [--enable|--disable] [--url URL] [--client-id ID]
//	                    [--client-secret-file FILE|-] [--role-path PATH] [--allowed-role ROLE]
//	otpd iam clear APP_ID
//
// set changes only the settings given and keeps the others. The client secret is read from a
// file or standard input, never from the command line (where ps and shell history would see it).
func cmdIAM(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 && args[0] == "set" {
		return iamSet(ctx, e, args[1:])
	}
	return runVerbs(ctx, e, "iam", []verb{
		{"show", "APP_ID", "show an application's IAM introspection settings (the secret masked)", idAction("GET", "/v1/applications/", "/iam")},
		{"set", "APP_ID [--url …]", "change IAM introspection settings (only those given)", nil},
		{"clear", "APP_ID", "remove an application's IAM introspection settings", idAction("DELETE", "/v1/applications/", "/iam")},
	}, args)
}

// iamSettings is the body of GET and PUT /v1/applications/{id}/iam.
type iamSettings struct {
	Enabled          bool    `json:"enabled"`
	IntrospectionURL string  `json:"introspection_url"`
	ClientID         string  `json:"client_id"`
	ClientSecret     *string `json:"client_secret,omitempty"`
	RolePath         string  `json:"role_path"`
	AllowedRole      string  `json:"allowed_role"`
}

func iamSet(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("otpd iam set", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	enable := fs.Bool("enable", false, "turn IAM introspection on")
	disable := fs.Bool("disable", false, "turn IAM introspection off")
	u := fs.String("url", "", "introspection endpoint `URL` (https://, or http:// to a loopback address)")
	clientID := fs.String("client-id", "", "OAuth client `id` otpd authenticates to the IAM with")
	secretFile := fs.String("client-secret-file", "", "read the client secret from `FILE` (- for standard input); an empty file clears it")
	rolePath := fs.String("role-path", "", "JSON `path` of the roles in the introspection answer, e.g. $.realm_access.roles")
	role := fs.String("allowed-role", "", "the `role` a requestor's token must carry")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: otpd iam set APP_ID [flags]\n\nChange an application's IAM introspection settings; settings not given are kept.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	connect := clientFlags(e, fs)
	if err := fs.Parse(interleave(fs, args)); err != nil {
		return err
	}
	if err := need(fs.Args(), 1, "one APP_ID"); err != nil {
		return err
	}
	if *enable && *disable {
		return fmt.Errorf("%w: --enable and --disable exclude each other", errUsage)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var secret *string
	if given["client-secret-file"] {
		var (
			raw []byte
			err error
		)
		if *secretFile == "-" {
			raw, err = io.ReadAll(io.LimitReader(e.stdin, 4096))
		} else {
			raw, err = os.ReadFile(*secretFile)
		}
		if err != nil {
			return fmt.Errorf("client secret: %w", err)
		}
		s := strings.TrimRight(string(raw), "\r\n")
		secret = &s
	}
	t, err := connect(ctx)
	if err != nil {
		return err
	}
	defer t.close()
	path := "/v1/applications/" + url.PathEscape(fs.Arg(0)) + "/iam"
	var cur iamSettings
	if _, err := t.cli.Do(ctx, "GET", path, nil, &cur); err != nil {
		return err
	}
	cur.ClientSecret = secret // nil keeps the stored secret
	if *enable {
		cur.Enabled = true
	}
	if *disable {
		cur.Enabled = false
	}
	for _, f := range []struct {
		name     string
		dst, src *string
	}{{"url", &cur.IntrospectionURL, u}, {"client-id", &cur.ClientID, clientID},
		{"role-path", &cur.RolePath, rolePath}, {"allowed-role", &cur.AllowedRole, role}} {
		if given[f.name] {
			*f.dst = *f.src
		}
	}
	raw, err := t.cli.Do(ctx, "PUT", path, cur, nil)
	if err != nil {
		return err
	}
	if err := printJSON(e.stdout, raw); err != nil {
		return err
	}
	var after struct {
		Ready    bool `json:"ready"`
		Problems []struct {
			Field, Message string
		} `json:"problems"`
	}
	if json.Unmarshal(raw, &after) == nil && !after.Ready {
		fmt.Fprintln(e.stderr, "note: the settings are saved but not complete yet:")
		for _, p := range after.Problems {
			fmt.Fprintf(e.stderr, "  %s: %s\n", p.Field, p.Message)
		}
	}
	return nil
}
