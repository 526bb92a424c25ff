package main

import (
	"context"
	"flag"
	"net/url"
	"strconv"
)

// otpd audit: the tenant's audit log (GET /v1/audit), newest first. Local mode acts as the
// tenant's admin.

func cmdAudit(ctx context.Context, e *env, args []string) error {
	return runVerbs(ctx, e, "audit", []verb{
		{"list", "[--action A] [--limit N] [--cursor C]", "list audit events, newest first", func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			action := fs.String("action", "", "only events of this `action` (e.g. device.locked, template.approve)")
			limit := fs.Int("limit", 50, "page `size` (1–500)")
			cursor := fs.String("cursor", "", "continue after a page: its next_cursor `value`")
			return func(pos []string) (string, string, any, error) {
				q := url.Values{"limit": {strconv.Itoa(*limit)}}
				if *action != "" {
					q.Set("action", *action)
				}
				if *cursor != "" {
					q.Set("cursor", *cursor)
				}
				return "GET", "/v1/audit?" + q.Encode(), nil, need(pos, 0, "no arguments")
			}
		}},
	}, args)
}
