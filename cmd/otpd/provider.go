package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// cmdProvider manages the tenant's delivery providers through /v1/providers.
func cmdProvider(ctx context.Context, e *env, args []string) error {
	return runVerbs(ctx, e, "provider", []verb{
		{"list", "", "list the tenant's providers and the deployment's", noArgs("GET", "/v1/providers")},
		{"get", "ID", "show a provider (secrets masked)", oneID("GET", "/v1/providers/")},
		{"add", "--name N --type T --channel C …", "add a provider; prints its receipt token once", providerAdd},
		{"test", "ID --to +E164", "send a test message through a provider", func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			to := fs.String("to", "", "`recipient` (+E.164 phone number)")
			channel := fs.String("channel", "", "`channel` (default: the provider's first)")
			return func(pos []string) (string, string, any, error) {
				if err := need(pos, 1, "one ID"); err != nil {
					return "", "", nil, err
				}
				if *to == "" {
					return "", "", nil, fmt.Errorf("%w: --to is required", errUsage)
				}
				body := map[string]string{"to": *to}
				if *channel != "" {
					body["channel"] = *channel
				}
				return "POST", "/v1/providers/" + url.PathEscape(pos[0]) + "/test", body, nil
			}
		}},
		{"delete", "ID", "delete a provider", oneID("DELETE", "/v1/providers/")},
	}, args)
}

// pairs collects repeated name=value flags.
type pairs []string

func (p *pairs) String() string     { return strings.Join(*p, ",") }
func (p *pairs) Set(s string) error { *p = append(*p, s); return nil }

func providerAdd(fs *flag.FlagSet) func([]string) (string, string, any, error) {
	name := fs.String("name", "", "provider `name`")
	typ := fs.String("type", "", "`type`: http, twilio or smpp")
	var channels pairs
	fs.Var(&channels, "channel", "`channel` it serves (sms, viber, voice, whatsapp); repeat or comma-separate")
	role := fs.String("role", "", "`role` for its channels: primary (default) or secondary")
	settingsJSON := fs.String("settings", "", "the type's settings as a JSON `object` (or @file)")
	var settings, secrets pairs
	fs.Var(&settings, "setting", "one top-level setting as `name=value` (a string); repeatable")
	fs.Var(&secrets, "secret", "a secret as `name=value`, or name=@file to read it from a file; repeatable")
	disabled := fs.Bool("disabled", false, "add it switched off")
	return func(pos []string) (string, string, any, error) {
		if err := need(pos, 0, "flags only"); err != nil {
			return "", "", nil, err
		}
		body := map[string]any{"name": *name, "type": *typ}
		var chans []string
		for _, c := range channels {
			for _, part := range strings.Split(c, ",") {
				if part = strings.TrimSpace(part); part != "" {
					chans = append(chans, part)
				}
			}
		}
		body["channels"] = chans
		if *role != "" {
			body["role"] = *role
		}
		if *disabled {
			body["enabled"] = false
		}
		st := map[string]any{}
		if raw := *settingsJSON; raw != "" {
			if strings.HasPrefix(raw, "@") {
				b, err := os.ReadFile(raw[1:])
				if err != nil {
					return "", "", nil, fmt.Errorf("--settings: %w", err)
				}
				raw = string(b)
			}
			if err := json.Unmarshal([]byte(raw), &st); err != nil || st == nil {
				return "", "", nil, fmt.Errorf("%w: --settings must be a JSON object", errUsage)
			}
		}
		for _, kv := range settings {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return "", "", nil, fmt.Errorf("%w: --setting wants name=value", errUsage)
			}
			st[k] = v
		}
		body["settings"] = st
		if len(secrets) > 0 {
			sec := map[string]string{}
			for _, kv := range secrets {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return "", "", nil, fmt.Errorf("%w: --secret wants name=value or name=@file", errUsage)
				}
				if strings.HasPrefix(v, "@") {
					b, err := os.ReadFile(v[1:])
					if err != nil {
						return "", "", nil, fmt.Errorf("--secret %s: %w", k, err)
					}
					v = strings.TrimRight(string(b), "\r\n")
				}
				sec[k] = v
			}
			body["secrets"] = sec
		}
		return "POST", "/v1/providers", body, nil
	}
}
