package bsg_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store/storetest"
)

// TestList covers otp_list: the required period, every filter, paging, every sort key in both
// directions, lazy expiry, and the validation of each parameter.
func TestList(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b, nil)
		e.settings(`{"allowed_countries":["AU","FR","DE"]}`)
		base := with(seedSMS(), "template_id", 1, "code_digits", 6)
		send := func(kv ...any) string {
			t.Helper()
			id := e.sendOK(with(base, kv...))["id"].(string)
			e.clk.Advance(time.Second)
			return id
		}
		s1 := send()
		s2 := send("recipient", "33612345678")
		e.bsg(call{method: "POST", tpl: verifyPath, args: []string{s2}, tok: "-", body: map[string]string{"access_code": e.code("33612345678")}, want: 200})
		s3 := send("recipient", "61401629755", "channel", "viber")
		e.bsg(call{method: "POST", tpl: cancelPath, args: []string{s3}, tok: "-", want: 200})
		s4 := send("recipient", "4915112345678", "code_lifetime", 30)
		e.clk.Advance(24 * time.Hour)
		e.tok = e.login(e.appKey) // a token lives an hour
		s5 := send("recipient", "61401629756")
		e.clk.Advance(24 * time.Hour)
		e.tok = e.login(e.appKey)
		var day3 []string
		for i := range 11 {
			day3 = append(day3, send("recipient", fmt.Sprintf("614016%02d754", i)))
		}

		list := func(q string, want int) res {
			t.Helper()
			return e.bsg(call{method: "GET", tpl: listPath, query: q, tok: "-", want: want})
		}
		ids := func(r res) []string {
			t.Helper()
			var out []string
			for _, it := range r.data()["list"].([]any) {
				out = append(out, it.(map[string]any)["id"].(string))
			}
			return out
		}
		day1 := "filter[from]=2026-11-24&filter[to]=2026-11-24"
		expect := func(q string, want []string, total int) {
			t.Helper()
			r := list(q, 200)
			if got := ids(r); !slices.Equal(got, want) || r.data()["total"] != float64(total) {
				t.Errorf("%s: got %v (total %v), want %v (total %d)", q, got, r.data()["total"], want, total)
			}
		}

		expect(day1, []string{s1, s2, s3, s4}, 4)
		expect("filter[from]=2026-11-24&filter[to]=2026-11-25", []string{s1, s2, s3, s4, s5}, 5)
		expect("filter[from]=2026-11-24%2012:00:01&filter[to]=2026-11-24T12:00:02Z", []string{s2, s3}, 2)
		expect(day1+"&filter[ids]="+s3+"&filter[ids]="+s1, []string{s1, s3}, 2)
		expect(day1+"&filter[ids][]="+s4, []string{s4}, 1)
		expect(day1+"&filter[status]=verified", []string{s2}, 1)
		expect(day1+"&filter[status]=canceled", []string{s3}, 1)
		expect(day1+"&filter[channel]=viber", []string{s3}, 1)
		expect(day1+"&filter[channel]=sms", []string{s1, s2, s4}, 3)
		expect(day1+"&filter[recipient]=61401629754", []string{s1}, 1)
		expect(day1+"&filter[country_code]=AU", []string{s1, s3}, 2)
		expect(day1+"&filter[country_code]=de", []string{s4}, 1)
		expect(day1+"&way=desc", []string{s4, s3, s2, s1}, 4)
		// s1 and s4 were left pending: two days later the list shows them expired, finished when
		// their lifetimes ended.
		r := list(day1+"&filter[status]=expired", 200)
		if got := ids(r); !slices.Equal(got, []string{s1, s4}) {
			t.Fatalf("expired: %v", got)
		}
		it := r.data()["list"].([]any)[1].(map[string]any)
		if it["finished_at"] != it["expired_at"] || len(it["messages"].([]any)) != 1 {
			t.Errorf("expired item: %v", it)
		}

		// Paging: page[limit] defaults to 10.
		day3q := "filter[from]=2026-11-26&filter[to]=2026-11-26"
		expect(day3q, day3[:10], 11)
		expect(day3q+"&page[offset]=10", day3[10:], 11)
		expect(day3q+"&page[limit]=10&page[offset]=5", day3[5:], 11)
		expect(day3q+"&page[offset]=11", nil, 11)

		// Every sort key, both ways: the items come in that order, ties by id the same way.
		all := "filter[from]=2026-11-24&filter[to]=2026-11-26&page[limit]=500"
		for _, key := range []string{"id", "status", "channel", "recipient", "created_at", "finished_at", "country_code"} {
			for _, way := range []string{"asc", "desc"} {
				r := list(all+"&sort="+key+"&way="+way, 200)
				items := r.data()["list"].([]any)
				if len(items) != 16 {
					t.Fatalf("sort %s: %d items", key, len(items))
				}
				for i := 1; i < len(items); i++ {
					a, b := items[i-1].(map[string]any), items[i].(map[string]any)
					ka, kb := sortKey(a, key), sortKey(b, key)
					ok := ka < kb || (ka == kb && a["id"].(string) < b["id"].(string))
					if way == "desc" {
						ok = ka > kb || (ka == kb && a["id"].(string) > b["id"].(string))
					}
					if !ok {
						t.Errorf("sort=%s way=%s: item %d (%s) before item %d (%s)", key, way, i-1, ka, i, kb)
					}
				}
			}
		}

		// Parameter validation.
		bad := map[string][2]string{
			"":                        {"filter[from]", "This value should not be blank."},
			"filter[from]=2026-11-24": {"filter[to]", "This value should not be blank."},
			"filter[from]=yesterday&filter[to]=2026-11-24":                    {"filter[from]", "This value is not a valid date."},
			"filter[from]=2026-11-25&filter[to]=2026-11-23":                   {"filter[to]", "This value should be greater than or equal to filter[from]."},
			day1 + "&filter[ids]=a&filter[ids]=b&filter[ids]=c&filter[ids]=d": {"filter[ids]", "This collection should contain 3 elements or less."},
			day1 + "&filter[ids]=a&filter[ids]=a":                             {"filter[ids]", "This collection should contain only unique elements."},
			day1 + "&filter[ids]=" + strings.Repeat("a", 37):                  {"filter[ids]", "This value is not valid."},
			day1 + "&filter[ids]=a%00":                                        {"filter[ids]", "This value is not valid."}, // was a 500
			day1 + "&filter[status]=done":                                     {"filter[status]", "The value you selected is not a valid choice."},
			day1 + "&filter[channel]=email":                                   {"filter[channel]", "The value you selected is not a valid choice."},
			day1 + "&filter[recipient]=%2B61401629754":                        {"filter[recipient]", "This value is not valid."},
			day1 + "&filter[country_code]=AUS":                                {"filter[country_code]", "This value is not valid."},
			day1 + "&page[limit]=9":                                           {"page[limit]", "This value should be between 10 and 500."},
			day1 + "&page[limit]=501":                                         {"page[limit]", "This value should be between 10 and 500."},
			day1 + "&page[limit]=ten":                                         {"page[limit]", "This value should be of type integer."},
			day1 + "&page[offset]=-1":                                         {"page[offset]", "This value should be greater than or equal to 0."},
			day1 + "&sort=price":                                              {"sort", "The value you selected is not a valid choice."},
			day1 + "&way=up":                                                  {"way", "The value you selected is not a valid choice."},
		}
		for q, want := range bad {
			wantFields(t, list(q, 422), want[0], want[1])
		}
		wantFields(t, list("%zz", 422), "query", "This value is not valid.")
	})
}

// sortKey is the value an item sorts by, as a comparable string.
func sortKey(it map[string]any, key string) string {
	switch key {
	case "finished_at":
		if it["finished_at"] == nil {
			return "~" // unfinished sessions finish last
		}
	}
	return fmt.Sprint(it[key])
}
