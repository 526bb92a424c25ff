package main

import (
	"context"
	"flag"
	"net/url"
	"strconv"
	"strings"
)

// otpd template: the tenant's message templates (the BSG surface's), including the operator's
// moderation when the tenant's moderation setting is on. Local mode acts as the tenant's admin.

func cmdTemplate(ctx context.Context, e *env, args []string) error {
	return runVerbs(ctx, e, "template", []verb{
		{"list", "[--status S]", "list templates (the default one included)", func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			status := fs.String("status", "", "filter by `status`: requested, approved, rejected, deleted")
			limit := fs.Int("limit", 50, "page `size` (1–500)")
			offset := fs.Int("offset", 0, "skip this many `templates`")
			return func(pos []string) (string, string, any, error) {
				q := url.Values{"limit": {strconv.Itoa(*limit)}, "offset": {strconv.Itoa(*offset)}}
				if *status != "" {
					q.Set("status", *status)
				}
				return "GET", "/v1/templates?" + q.Encode(), nil, need(pos, 0, "no arguments")
			}
		}},
		{"get", "ID", "show a template", oneID("GET", "/v1/templates/")},
		{"create", "--name N --text T", "create a template; the text holds {code2fa} exactly once",
			func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
				body := templateFields(fs)
				return func(pos []string) (string, string, any, error) {
					return "POST", "/v1/templates", body(), need(pos, 0, "flags only")
				}
			}},
		{"update", "ID [--text T]", "change a template (back to requested when moderated)",
			func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
				body := templateFields(fs)
				return func(pos []string) (string, string, any, error) {
					if err := need(pos, 1, "one ID"); err != nil {
						return "", "", nil, err
					}
					return "PATCH", "/v1/templates/" + url.PathEscape(pos[0]), body(), nil
				}
			}},
		{"approve", "ID", "approve a requested template (moderation)", moderation("/approve")},
		{"reject", "ID", "reject a template", moderation("/reject")},
		{"delete", "ID", "delete a template (not the default one)", oneID("DELETE", "/v1/templates/")},
	}, args)
}

// moderation posts an empty JSON object to /v1/templates/ID + suffix.
func moderation(suffix string) func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
	return func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
		return func(pos []string) (string, string, any, error) {
			if err := need(pos, 1, "one ID"); err != nil {
				return "", "", nil, err
			}
			return "POST", "/v1/templates/" + url.PathEscape(pos[0]) + suffix, map[string]any{}, nil
		}
	}
}

// templateFields registers --name, --text and --countries; only the flags given go in the body.
func templateFields(fs *flag.FlagSet) func() map[string]any {
	name := fs.String("name", "", "template `name` (3–50 characters)")
	text := fs.String("text", "", "message `text` with {code2fa} exactly once")
	countries := fs.String("countries", "", "comma-separated ISO 3166 `codes` the template may be sent to (empty: all allowed)")
	return func() map[string]any {
		body := map[string]any{}
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "name":
				body["name"] = *name
			case "text":
				body["text"] = *text
			case "countries":
				cs := []string{}
				for _, c := range strings.Split(*countries, ",") {
					if c = strings.TrimSpace(c); c != "" {
						cs = append(cs, c)
					}
				}
				body["countries"] = cs
			}
		})
		return body
	}
}
