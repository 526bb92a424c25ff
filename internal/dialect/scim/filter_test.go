package scim

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/otpd/otpd/internal/store"
	"github.com/otpd/otpd/internal/store/sqlstore"
	"github.com/otpd/otpd/internal/store/storetest"
)

func cmpf(attr, op string, v any) store.Filter {
	return store.Filter{Op: store.FilterCmp, Attr: attr, Cmp: op, Value: v}
}
func and(c ...store.Filter) store.Filter { return store.Filter{Op: store.FilterAnd, Children: c} }
func or(c ...store.Filter) store.Filter  { return store.Filter{Op: store.FilterOr, Children: c} }
func not(c store.Filter) store.Filter {
	return store.Filter{Op: store.FilterNot, Children: []store.Filter{c}}
}

var t1 = time.Date(2021, 10, 14, 6, 44, 43, 0, time.UTC)

// Every operator, precedence (and binds tighter than or), not, grouping, attribute paths
// (schema URN prefix, sub-attributes, value paths, case-insensitive names), value types.
var translations = []struct {
	res    *resource
	filter string
	want   store.Filter
}{
	{deviceResource, `type eq "TOTP"`, cmpf("type", "eq", "TOTP")},
	{deviceResource, `type eq "totp"`, cmpf("type", "eq", "TOTP")}, // an enumeration: upper-cased
	{deviceResource, `name ne "x"`, cmpf("name", "ne", "x")},
	{deviceResource, `name co "ab"`, cmpf("name", "co", "ab")},
	{deviceResource, `name sw "SMS"`, cmpf("name", "sw", "SMS")},
	{deviceResource, `name ew "co*"`, cmpf("name", "ew", "co*")},
	{deviceResource, `name gt "M"`, cmpf("name", "gt", "M")},
	{deviceResource, `fails ge 3`, cmpf("fails", "ge", int64(3))},
	{deviceResource, `fails lt 3`, cmpf("fails", "lt", int64(3))},
	{deviceResource, `id le 4022880`, cmpf("number", "le", int64(4022880))},
	{deviceResource, `lastUsed pr`, cmpf("lastUsed", "pr", nil)},
	{deviceResource, `LASTUSED PR`, cmpf("lastUsed", "pr", nil)},
	{deviceResource, `email eq "Patricia@Soffid.COM"`, cmpf("email", "eq", "patricia@soffid.com")},
	{deviceResource, `phone eq null`, not(cmpf("phone", "pr", nil))},
	{deviceResource, `phone ne null`, cmpf("phone", "pr", nil)},
	{deviceResource, `name eq "say \"hi\" \\ \u00E9"`, cmpf("name", "eq", "say \"hi\" \\ é")},
	{deviceResource, `created eq "2021-10-14 06:44:43"`, store.Filter{Op: store.FilterCmp, Attr: "created", Cmp: "eq", Value: t1, Precision: time.Second}},
	{deviceResource, `created gt "2021-10-14T06:44:43.250Z"`, store.Filter{Op: store.FilterCmp, Attr: "created", Cmp: "gt", Value: t1.Add(250 * time.Millisecond), Precision: time.Millisecond}},
	{deviceResource, `meta.created ge "2021-10-14"`, store.Filter{Op: store.FilterCmp, Attr: "created", Cmp: "ge", Value: t1.Truncate(24 * time.Hour), Precision: 24 * time.Hour}},
	{deviceResource, `meta.lastModified lt "2021-10-14T08:44:43+02:00"`, store.Filter{Op: store.FilterCmp, Attr: "updated", Cmp: "lt", Value: t1, Precision: time.Second}},
	{deviceResource, `urn:soffid:com.soffid.iam.addons.otp.common.OtpDevice:status eq "V"`, cmpf("status", "eq", "V")},
	// precedence and grouping
	{deviceResource, `type eq "SMS" or type eq "TOTP" and status eq "V"`,
		or(cmpf("type", "eq", "SMS"), and(cmpf("type", "eq", "TOTP"), cmpf("status", "eq", "V")))},
	{deviceResource, `(type eq "SMS" or type eq "TOTP") and status eq "V"`,
		and(or(cmpf("type", "eq", "SMS"), cmpf("type", "eq", "TOTP")), cmpf("status", "eq", "V"))},
	{deviceResource, `type eq "SMS" and status eq "V" or fails gt 0`,
		or(and(cmpf("type", "eq", "SMS"), cmpf("status", "eq", "V")), cmpf("fails", "gt", int64(0)))},
	{deviceResource, `not (type eq "SMS") and not(fails gt 2 or user eq "x")`,
		and(not(cmpf("type", "eq", "SMS")), not(or(cmpf("fails", "gt", int64(2)), cmpf("user", "eq", "x"))))},
	{deviceResource, `a eq "1" or a eq "2" or a eq "3"`, store.Filter{}}, // replaced below: unknown attribute
	// Users: value paths and sub-attributes
	{userResource, `userName eq "alice"`, cmpf("login", "eq", "alice")},
	{userResource, `emails[value eq "A@X.COM"]`, cmpf("email", "eq", "a@x.com")},
	{userResource, `emails.value co "@x"`, cmpf("email", "co", "@x")},
	{userResource, `emails co "@x"`, cmpf("email", "co", "@x")},
	{userResource, `name.familyName sw "Lo"`, cmpf("lastName", "sw", "Lo")},
	{userResource, `active eq false`, cmpf("enabled", "eq", false)},
	{userResource, `urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob"`, cmpf("login", "eq", "bob")},
	{userResource, `phoneNumbers[value sw "+34" or value sw "+1"]`, or(cmpf("phone", "sw", "+34"), cmpf("phone", "sw", "+1"))},
}

func TestTranslate(t *testing.T) {
	for _, c := range translations {
		if strings.HasPrefix(c.filter, "a eq") {
			continue
		}
		got, err := parseFilter(c.res, c.filter)
		if err != nil {
			t.Errorf("%s: %v", c.filter, err)
			continue
		}
		if d := cmp.Diff(c.want, *got); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.filter, d)
		}
	}
}

// Refusals: write-only attributes, unknown attributes, wrong operand types, bad syntax, the
// bounds. Each is a filterError (400 invalidFilter).
func TestTranslateRefuses(t *testing.T) {
	deep := strings.Repeat("(", 20) + `type eq "x"` + strings.Repeat(")", 20)
	wide := strings.TrimSuffix(strings.Repeat(`fails eq 1 or `, 70), " or ")
	for _, f := range []string{
		`secret sw "A"`, `pin eq "1234"`, `seed pr`, `image pr`, `uri co "otpauth"`,
		`urn:soffid:com.soffid.iam.addons.otp.common.OtpDevice:pin eq "1"`,
		`nosuch eq "x"`, `type.sub eq "x"`, `meta.location eq "x"`, `urn:other:schema:type eq "x"`,
		`fails co "1"`, `fails eq "1"`, `fails eq 1.5`, `type eq 1`, `type eq true`, `created eq "yesterday"`,
		`created co "2021"`, `type gt null`, `emails[value eq "x"]`,
		`type eq "x" and`, `type eq`, `type xx "x"`, `(type eq "x"`, `type eq "x")`, `type eq "x" garbage`,
		`type eq 'x'`, `type eq "x`, ``, `   `, `type eq "x" -- comment`, `type eq "x"; DROP TABLE devices`,
		deep, wide, `name eq "` + strings.Repeat("a", MaxFilterLength) + `"`,
		`name eq "` + strings.Repeat("a", store.MaxFilterValue+1) + `"`,
		`name eq "0000000000\b0\u0000"`, `name ne "x\u0000"`, // found by FuzzSCIMFilter: was a 500
	} {
		_, err := parseFilter(deviceResource, f)
		var fe *filterError
		if !errors.As(err, &fe) {
			t.Errorf("%.60q: %v, want an invalidFilter error", f, err)
		}
	}
	for _, f := range []string{`password eq "x"`, `emails[type eq "work"]`, `emails[value eq "a"][value eq "b"]`} {
		if _, err := parseFilter(userResource, f); err == nil {
			t.Errorf("users %q accepted", f)
		}
	}
	for _, s := range [][2]string{{"pin", ""}, {"secret", "descending"}, {"nosuch", ""}, {"name", "sideways"}, {"a.b.c", ""}} {
		if _, err := parseSort(deviceResource, s[0], s[1]); err == nil {
			t.Errorf("sort %v accepted", s)
		}
	}
	if k, err := parseSort(deviceResource, "meta.lastModified", "Descending"); err != nil || *k != (store.SortKey{Attr: "updated", Desc: true}) {
		t.Errorf("sort by meta.lastModified: %v %v", k, err)
	}
}

// render writes a store filter back as a SCIM filter, for the round trip.
func render(f *store.Filter) string {
	names := map[string]string{"number": "id", "updated": "meta.lastModified"}
	switch f.Op {
	case store.FilterAnd, store.FilterOr:
		parts := make([]string, len(f.Children))
		for i := range f.Children {
			parts[i] = "(" + render(&f.Children[i]) + ")"
		}
		return strings.Join(parts, " "+string(f.Op)+" ")
	case store.FilterNot:
		return "not (" + render(&f.Children[0]) + ")"
	}
	attr := f.Attr
	if n, ok := names[attr]; ok {
		attr = n
	}
	if f.Cmp == store.CmpPr {
		return attr + " pr"
	}
	var v string
	switch x := f.Value.(type) {
	case string:
		var b strings.Builder
		b.WriteByte('"')
		for _, r := range x {
			switch {
			case r == '"' || r == '\\':
				b.WriteString("\\" + string(r))
			case r < 0x20:
				fmt.Fprintf(&b, "\\u%04X", r)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('"')
		v = b.String()
	case int64:
		v = strconv.FormatInt(x, 10)
	case bool:
		v = strconv.FormatBool(x)
	case time.Time:
		switch f.Precision {
		case 24 * time.Hour:
			v = `"` + x.Format("2006-01-02") + `"`
		case time.Second:
			v = `"` + x.Format(time.RFC3339) + `"`
		default:
			v = `"` + x.Format("2006-01-02T15:04:05.000Z07:00") + `"`
		}
	}
	return attr + " " + f.Cmp + " " + v
}

// FuzzSCIMFilter: for any input the translation never panics; what it accepts is a valid tree
// of bounded size that renders back to a filter translating to the same tree; and the SQL the
// store builds from it (parameterised, on a real SQLite file) selects exactly the devices the
// reference semantics (storetest.EvalFilter) selects — so no filter text can widen a query.
func FuzzSCIMFilter(f *testing.F) {
	for _, c := range translations {
		f.Add(c.filter)
	}
	for _, s := range []string{`name eq "x' OR '1'='1"`, `name eq "x\") or (1=1"`, `name co "%"`, `name sw "_"`,
		`name eq "--"`, `user eq "a" or 1 eq 1`, `not(not(not(type eq "PIN")))`, `fails gt -1 and fails lt 99999999999`,
		`lastUsed gt "2021-10-14 07:00:00" or not (lastUsed pr)`, `status eq "L" or status eq "C"`, `id gt 2 and id le 5`} {
		f.Add(s)
	}
	ctx := context.Background()
	dir := f.TempDir()
	st, err := sqlstore.Open(ctx, filepath.Join(dir, "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		f.Fatal(err)
	}
	all := fuzzPopulation(f, st)
	now := t1.Add(2 * time.Hour)
	f.Fuzz(func(t *testing.T, raw string) {
		tree, err := parseFilter(deviceResource, raw)
		if err != nil {
			var fe *filterError
			if !errors.As(err, &fe) {
				t.Fatalf("%q: error of the wrong kind: %v", raw, err)
			}
			return
		}
		if err := store.ValidateFilter(tree, store.DeviceAttrs); err != nil {
			t.Fatalf("%q: accepted an invalid tree: %v", raw, err)
		}
		again, err := parseFilter(deviceResource, render(tree))
		if err != nil {
			t.Fatalf("%q: its rendering %q does not parse: %v", raw, render(tree), err)
		}
		if d := cmp.Diff(*tree, *again); d != "" {
			t.Fatalf("%q: round trip through %q changed the tree:\n%s", raw, render(tree), d)
		}
		got, total, err := st.QueryDevices(ctx, "tn-fuzz", store.DeviceQuery{Filter: tree, Limit: store.MaxQueryLimit, Now: now})
		if err != nil {
			t.Fatalf("%q: the store refused a valid tree: %v", raw, err)
		}
		var want []int64
		for i := range all {
			if storetest.EvalFilter(tree, func(a string) (any, bool) { return storetest.DeviceValue(&all[i], a, now) }) {
				want = append(want, all[i].Number)
			}
		}
		var nums []int64
		for _, d := range got {
			nums = append(nums, d.Number)
		}
		if !slices.Equal(nums, want) || total != len(want) {
			t.Fatalf("%q: SQL selects %v (total %d), the reference %v", raw, nums, total, want)
		}
	})
}

func fuzzPopulation(f *testing.F, st store.Store) []store.Device {
	ctx := context.Background()
	if err := st.CreateTenant(ctx, &store.Tenant{ID: "tn-fuzz", Name: "fuzz", CreatedAt: t1}); err != nil {
		f.Fatal(err)
	}
	users := []string{"franck", "patricia", "x' OR '1'='1", "Zoë"}
	for i, u := range users {
		if err := st.CreateUser(ctx, &store.User{ID: fmt.Sprintf("u-%d", i), TenantID: "tn-fuzz", Login: u, Enabled: true, CreatedAt: t1, UpdatedAt: t1}); err != nil {
			f.Fatal(err)
		}
	}
	types := []string{"TOTP", "EMAIL", "SMS", "PIN", "HOTP"}
	names := []string{"TOTP00000001", "Email message to pg*****@so****.co*", "SMS message to 66*****44", `a "quoted" 100%_name`, "--", "x') or (1=1"}
	for i := range 30 {
		d := storetest.DeviceFixture("tn-fuzz", fmt.Sprintf("u-%d", i%4), types[i%5], t1.Add(time.Duration(i)*7*time.Minute+time.Duration(i)*time.Millisecond))
		d.Name, d.Fails = names[i%6], i%7
		d.Status = []string{"C", "V", "D", "L"}[i%4]
		if d.Status == "L" && i%8 == 3 {
			until := t1.Add(time.Hour)
			d.LockedUntil = &until
		}
		if i%3 == 1 {
			lu := d.CreatedAt.Add(20 * time.Minute)
			d.LastUsedAt = &lu
		}
		d.UpdatedAt = d.CreatedAt.Add(time.Duration(i%4) * time.Minute)
		if err := st.CreateDevice(ctx, d); err != nil {
			f.Fatal(err)
		}
	}
	all, _, err := st.QueryDevices(ctx, "tn-fuzz", store.DeviceQuery{Limit: 100, Now: t1})
	if err != nil || len(all) != 30 {
		f.Fatalf("population: %d, %v", len(all), err)
	}
	return all
}
