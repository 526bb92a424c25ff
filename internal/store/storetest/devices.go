package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// testDevices runs the OTP device tests (devices.go of the store package).
func testDevices(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"CRUD", testDeviceCRUD},
		{"Isolation", testDeviceIsolation},
		{"OutcomeCAS", testDeviceOutcomeCAS},
		{"OutcomeCASTwoInstances", func(t *testing.T, s store.Store) { deviceOutcomeRace(t, s, sibling(t, s)) }},
		{"QueryFilters", testDeviceQueryFilters},
		{"QuerySortAndPages", testDeviceQuerySort},
		{"QueryRefusesBadTrees", testDeviceQueryRefuses},
		{"QueryUsers", testQueryUsers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// DeviceFixture is a device row as the suite (and the SCIM fuzz test) creates it.
func DeviceFixture(tenantID, userID, typ string, created time.Time) *store.Device {
	d := &store.Device{TenantID: tenantID, UserID: userID, Type: typ, Name: typ + " device",
		Status: store.DeviceCreated, LastStep: -1, CreatedAt: created, UpdatedAt: created}
	switch typ {
	case store.DeviceTOTP, store.DeviceHOTP:
		d.Secret, d.Algorithm, d.Digits, d.Period = []byte("sealed seed"), "SHA1", 6, 30*time.Second
	case store.DevicePIN:
		d.Secret = []byte("sealed pin hash")
	case store.DeviceSMS:
		d.Phone = "+34666555444"
	case store.DeviceEMAIL:
		d.Email = "pgarcia@soffid.com"
	}
	return d
}

func testDeviceCRUD(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	check(t, s.CreateUser(ctx, user(tn.ID, "u-1", "franck")))
	d := DeviceFixture(tn.ID, "u-1", store.DeviceTOTP, t0.Add(1500*time.Microsecond))
	check(t, s.CreateDevice(ctx, d))
	if d.ID == "" || d.Number <= 0 || d.Version != 1 || !d.CreatedAt.Equal(t0.Add(time.Millisecond)) {
		t.Fatalf("CreateDevice did not fill id/number/version or round the time: %+v", d)
	}
	d2 := DeviceFixture(tn.ID, "u-1", store.DeviceSMS, t0)
	check(t, s.CreateDevice(ctx, d2))
	if d2.Number <= d.Number {
		t.Errorf("numbers do not grow: %d then %d", d.Number, d2.Number)
	}
	got, err := s.GetDevice(ctx, tn.ID, d.ID)
	check(t, err)
	d.UserLogin, d.UserEnabled = "franck", true // from the join with users
	diff(t, "GetDevice", d, got)
	got, err = s.GetDeviceByNumber(ctx, tn.ID, d.Number)
	check(t, err)
	diff(t, "GetDeviceByNumber", d, got)
	list, err := s.ListUserDevices(ctx, tn.ID, "u-1")
	check(t, err)
	if len(list) != 2 || list[0].ID != d.ID || list[1].ID != d2.ID {
		t.Fatalf("ListUserDevices = %v", list)
	}
	wantErr(t, s.CreateDevice(ctx, DeviceFixture(tn.ID, "u-nobody", store.DeviceTOTP, t0)), store.ErrNotFound)
	dup := DeviceFixture(tn.ID, "u-1", store.DeviceTOTP, t0)
	dup.ID = d.ID
	wantErr(t, s.CreateDevice(ctx, dup), store.ErrAlreadyExists)

	// Full update with a version check.
	stale := *got
	got.Name, got.Status, got.Phone = "renamed", store.DeviceDisabled, "+15550100"
	got.UpdatedAt = t0.Add(time.Minute)
	got.LockedUntil = ptr(t0.Add(time.Hour))
	check(t, s.UpdateDevice(ctx, got))
	if got.Version != 2 {
		t.Errorf("version after update = %d", got.Version)
	}
	again, err := s.GetDevice(ctx, tn.ID, d.ID)
	check(t, err)
	diff(t, "after UpdateDevice", got, again)
	wantErr(t, s.UpdateDevice(ctx, &stale), store.ErrConflict)

	// Delete; the number is not reused.
	check(t, s.DeleteDevice(ctx, tn.ID, d2.ID))
	wantErr(t, s.DeleteDevice(ctx, tn.ID, d2.ID), store.ErrNotFound)
	_, err = s.GetDevice(ctx, tn.ID, d2.ID)
	wantErr(t, err, store.ErrNotFound)
	d3 := DeviceFixture(tn.ID, "u-1", store.DevicePIN, t0)
	check(t, s.CreateDevice(ctx, d3))
	if d3.Number <= d2.Number {
		t.Errorf("number %d reused after deleting %d", d3.Number, d2.Number)
	}
	wantErr(t, s.UpdateDevice(ctx, d2), store.ErrNotFound)

	// Deleting the user deletes its devices.
	check(t, s.DeleteUser(ctx, tn.ID, "u-1"))
	_, err = s.GetDevice(ctx, tn.ID, d.ID)
	wantErr(t, err, store.ErrNotFound)
}

func testDeviceIsolation(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := newTenant(t, s, "a"), newTenant(t, s, "b")
	check(t, s.CreateUser(ctx, user(a.ID, "u-a", "ada")))
	check(t, s.CreateUser(ctx, user(b.ID, "u-b", "bob")))
	d := DeviceFixture(a.ID, "u-a", store.DeviceTOTP, t0)
	check(t, s.CreateDevice(ctx, d))
	// A device cannot be attached to another tenant's user.
	wantErr(t, s.CreateDevice(ctx, DeviceFixture(b.ID, "u-a", store.DeviceTOTP, t0)), store.ErrNotFound)
	_, err := s.GetDevice(ctx, b.ID, d.ID)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetDeviceByNumber(ctx, b.ID, d.Number)
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.DeleteDevice(ctx, b.ID, d.ID), store.ErrNotFound)
	foreign := *d
	foreign.TenantID = b.ID
	wantErr(t, s.UpdateDevice(ctx, &foreign), store.ErrNotFound)
	wantErr(t, s.SetDeviceOutcome(ctx, &foreign, false), store.ErrNotFound)
	list, total, err := s.QueryDevices(ctx, b.ID, store.DeviceQuery{Limit: 100, Now: t0})
	check(t, err)
	if len(list) != 0 || total != 0 {
		t.Errorf("tenant b sees %d devices (total %d)", len(list), total)
	}
}

func testDeviceOutcomeCAS(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	check(t, s.CreateUser(ctx, user(tn.ID, "u-1", "ada")))
	d := DeviceFixture(tn.ID, "u-1", store.DeviceTOTP, t0)
	check(t, s.CreateDevice(ctx, d))

	// An accepted step: last_step moves forward, the version too.
	accept := *d
	accept.LastStep, accept.Status, accept.LastUsedAt, accept.ValidatedAt = 100, store.DeviceValidated, ptr(t0), ptr(t0)
	check(t, s.SetDeviceOutcome(ctx, &accept, true))
	got, err := s.GetDevice(ctx, tn.ID, d.ID)
	check(t, err)
	if got.LastStep != 100 || got.Status != "V" || got.Version != 2 || got.LastUsedAt == nil {
		t.Fatalf("after accept: %+v", got)
	}
	// The same step again, even with the current version, is refused by the statement.
	replay := *got
	wantErr(t, s.SetDeviceOutcome(ctx, &replay, true), store.ErrConflict)
	// A stale version is refused.
	wantErr(t, s.SetDeviceOutcome(ctx, d, false), store.ErrConflict)
	// A failure (not advanced) with the current version lands and leaves the step alone.
	fail := *got
	fail.Fails, fail.Status, fail.LockedUntil, fail.Lockouts = 5, store.DeviceLocked, ptr(t0.Add(time.Minute)), 1
	check(t, s.SetDeviceOutcome(ctx, &fail, false))
	got, err = s.GetDevice(ctx, tn.ID, d.ID)
	check(t, err)
	if got.Fails != 5 || got.Status != "L" || got.LastStep != 100 || got.Lockouts != 1 || !got.LockedUntil.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after failure: %+v", got)
	}
	// HOTP: the counter must move forward for an advanced write.
	h := DeviceFixture(tn.ID, "u-1", store.DeviceHOTP, t0)
	h.Counter = 7
	check(t, s.CreateDevice(ctx, h))
	same := *h
	wantErr(t, s.SetDeviceOutcome(ctx, &same, true), store.ErrConflict)
	same.Counter = 8
	check(t, s.SetDeviceOutcome(ctx, &same, true))
	deviceOutcomeRace(t, s, s)
}

// deviceOutcomeRace: 30 writers (alternating between a and b) holding the same version try to
// accept the same step; exactly one lands.
func deviceOutcomeRace(t *testing.T, a, b store.Store) {
	ctx := context.Background()
	tn, err := a.GetTenantByName(ctx, "race")
	if errors.Is(err, store.ErrNotFound) {
		tn = newTenant(t, a, "race")
		check(t, a.CreateUser(ctx, user(tn.ID, "u-race", "racer")))
	} else {
		check(t, err)
	}
	d := DeviceFixture(tn.ID, "u-race", store.DeviceTOTP, t0)
	check(t, a.CreateDevice(ctx, d))
	var ok, conflicts atomic.Int32
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range 30 {
		wg.Go(func() {
			s := a
			if i%2 == 1 {
				s = b
			}
			mine := *d
			mine.LastStep = 200
			<-gate
			err := s.InTx(ctx, func(q store.Queries) error { return q.SetDeviceOutcome(ctx, &mine, true) })
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("writer %d: %v", i, err)
			}
		})
	}
	close(gate)
	wg.Wait()
	if ok.Load() != 1 || conflicts.Load() != 29 {
		t.Errorf("%d accepted and %d conflicted, want 1 and 29", ok.Load(), conflicts.Load())
	}
}

// deviceSet creates a varied population for the query tests and returns it as read back.
func deviceSet(t *testing.T, s store.Store, tenantID string) []store.Device {
	t.Helper()
	ctx := context.Background()
	for _, u := range []struct{ id, login string }{{"u-f", "franck"}, {"u-p", "patricia"}, {"u-a", "agatha"}, {"u-z", "Zoë"}} {
		check(t, s.CreateUser(ctx, user(tenantID, u.id, u.login)))
	}
	types := []string{store.DeviceTOTP, store.DeviceEMAIL, store.DeviceSMS, store.DevicePIN, store.DeviceHOTP}
	users := []string{"u-f", "u-p", "u-a", "u-z"}
	for i := range 24 {
		d := DeviceFixture(tenantID, users[i%4], types[i%5], t0.Add(time.Duration(i)*time.Hour+time.Duration(i*37)*time.Millisecond))
		d.Name = fmt.Sprintf("%s%08d", d.Type, i*7%24)
		d.Fails = i % 6
		switch i % 4 {
		case 0:
			d.Status = store.DeviceValidated
			d.ValidatedAt = ptr(d.CreatedAt)
		case 1:
			d.Status = store.DeviceDisabled
		case 2: // a timed lock: runs out at created+90m
			d.Status = store.DeviceLocked
			d.LockedUntil = ptr(d.CreatedAt.Add(90 * time.Minute))
			if i%8 == 2 {
				d.ValidatedAt = ptr(d.CreatedAt)
			}
		case 3:
			if i%8 == 3 {
				d.Status = store.DeviceLocked // a lock only an operator lifts
			}
		}
		if i%3 != 0 {
			d.LastUsedAt = ptr(d.CreatedAt.Add(30 * time.Minute))
		}
		switch i % 7 {
		case 1:
			d.Name = "Email message to pg*****@so****.co*"
		case 2:
			d.Name = "SMS message to 66*****44 'quoted' \"double\" 100%_x"
		}
		d.UpdatedAt = d.CreatedAt.Add(time.Duration(i%5) * time.Minute)
		check(t, s.CreateDevice(ctx, d))
	}
	all, _, err := s.QueryDevices(ctx, tenantID, store.DeviceQuery{Limit: 1000, Now: t0})
	check(t, err)
	if len(all) != 24 {
		t.Fatalf("query of all devices returned %d", len(all))
	}
	return all
}

// DeviceValue returns a device's value of an allow-listed attribute at now, and whether the
// attribute is present, following the rules documented on store.Filter.
func DeviceValue(d *store.Device, attr string, now time.Time) (any, bool) {
	switch attr {
	case "number":
		return d.Number, true
	case "name":
		return d.Name, true
	case "type":
		return d.Type, true
	case "status":
		return d.StatusAt(now), true
	case "user":
		return d.UserLogin, true
	case "userId":
		return d.UserID, true
	case "fails":
		return int64(d.Fails), true
	case "created":
		return d.CreatedAt, true
	case "updated":
		return d.UpdatedAt, true
	case "lastUsed":
		if d.LastUsedAt == nil {
			return nil, false
		}
		return *d.LastUsedAt, true
	case "phone":
		return d.Phone, d.Phone != ""
	case "email":
		return d.Email, d.Email != ""
	}
	panic("storetest: unknown device attribute " + attr)
}

// EvalFilter is the reference semantics of a filter tree (see store.Filter), evaluated in Go
// over one resource whose attribute values value returns. Tests compare the store's results
// with it.
func EvalFilter(f *store.Filter, value func(attr string) (any, bool)) bool {
	switch f.Op {
	case store.FilterAnd:
		for i := range f.Children {
			if !EvalFilter(&f.Children[i], value) {
				return false
			}
		}
		return true
	case store.FilterOr:
		for i := range f.Children {
			if EvalFilter(&f.Children[i], value) {
				return true
			}
		}
		return false
	case store.FilterNot:
		return !EvalFilter(&f.Children[0], value)
	}
	v, present := value(f.Attr)
	if f.Cmp == store.CmpPr || !present {
		return present && f.Cmp == store.CmpPr
	}
	switch want := f.Value.(type) {
	case string:
		got := v.(string)
		switch f.Cmp {
		case store.CmpCo:
			return strings.Contains(got, want)
		case store.CmpSw:
			return strings.HasPrefix(got, want)
		case store.CmpEw:
			return strings.HasSuffix(got, want)
		}
		return order(f.Cmp, strings.Compare(got, want))
	case int64:
		return order(f.Cmp, cmp.Compare(v.(int64), want))
	case bool:
		eq := v.(bool) == want
		return (f.Cmp == store.CmpEq) == eq
	case time.Time:
		got := v.(time.Time)
		from, to := want, want.Add(f.Precision)
		in := !got.Before(from) && got.Before(to)
		switch f.Cmp {
		case store.CmpEq:
			return in
		case store.CmpNe:
			return !in
		case store.CmpGt:
			return !got.Before(to)
		case store.CmpGe:
			return !got.Before(from)
		case store.CmpLt:
			return got.Before(from)
		case store.CmpLe:
			return got.Before(to)
		}
	}
	panic(fmt.Sprintf("storetest: cannot evaluate %+v", *f))
}

func order(op string, c int) bool {
	switch op {
	case store.CmpEq:
		return c == 0
	case store.CmpNe:
		return c != 0
	case store.CmpGt:
		return c > 0
	case store.CmpGe:
		return c >= 0
	case store.CmpLt:
		return c < 0
	case store.CmpLe:
		return c <= 0
	}
	panic("storetest: unknown operator " + op)
}

// Filter-building helpers for the tables.
func fc(attr, op string, v any) store.Filter {
	return store.Filter{Op: store.FilterCmp, Attr: attr, Cmp: op, Value: v}
}
func ft(attr, op string, v time.Time, p time.Duration) store.Filter {
	return store.Filter{Op: store.FilterCmp, Attr: attr, Cmp: op, Value: v, Precision: p}
}
func fAnd(c ...store.Filter) store.Filter { return store.Filter{Op: store.FilterAnd, Children: c} }
func fOr(c ...store.Filter) store.Filter  { return store.Filter{Op: store.FilterOr, Children: c} }
func fNot(c store.Filter) store.Filter {
	return store.Filter{Op: store.FilterNot, Children: []store.Filter{c}}
}

func testDeviceQueryFilters(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	all := deviceSet(t, s, tn.ID)
	now := t0.Add(5 * time.Hour) // the timed locks of the first devices have run out
	third := all[3].CreatedAt
	filters := []store.Filter{
		fc("type", "eq", "TOTP"), fc("type", "ne", "TOTP"), fc("type", "eq", "totp"),
		fc("name", "co", "*****"), fc("name", "co", "'quoted'"), fc("name", "co", `"double" 100%_`),
		fc("name", "co", "%"), fc("name", "co", "_"), fc("name", "co", ""),
		fc("name", "sw", "SMS"), fc("name", "sw", "sms"), fc("name", "ew", "co*"), fc("name", "ew", "x"),
		fc("name", "ew", "a very long suffix that no name has at all"),
		fc("name", "gt", "P"), fc("name", "ge", "PIN00000005"), fc("name", "lt", "HOTP"), fc("name", "le", "EMAIL00000019"),
		fc("user", "eq", "franck"), fc("user", "eq", "Zoë"), fc("user", "gt", "Z"), fc("user", "sw", "pat"),
		fc("status", "eq", "L"), fc("status", "eq", "V"), fc("status", "eq", "C"), fc("status", "ne", "D"),
		fc("fails", "eq", int64(0)), fc("fails", "gt", int64(3)), fc("fails", "ge", int64(3)),
		fc("fails", "lt", int64(2)), fc("fails", "le", int64(2)), fc("fails", "ne", int64(5)),
		fc("number", "gt", all[10].Number), fc("number", "le", all[2].Number),
		fc("lastUsed", "pr", nil), fNot(fc("lastUsed", "pr", nil)), fc("phone", "pr", nil), fc("email", "pr", nil),
		fc("phone", "eq", "+34666555444"), fc("phone", "ne", "+34666555444"), fc("email", "co", "soffid"),
		fc("name", "pr", nil),
		ft("created", "eq", third.Truncate(time.Second), time.Second),
		ft("created", "eq", third, time.Millisecond),
		ft("created", "ne", third.Truncate(time.Second), time.Second),
		ft("created", "gt", third.Truncate(time.Second), time.Second),
		ft("created", "ge", third.Truncate(time.Second), time.Second),
		ft("created", "lt", third.Truncate(time.Second), time.Second),
		ft("created", "le", third.Truncate(time.Second), time.Second),
		ft("lastUsed", "lt", t0.Add(10*time.Hour), time.Second),
		ft("lastUsed", "ge", t0.Add(10*time.Hour), time.Second),
		fNot(ft("lastUsed", "lt", t0.Add(10*time.Hour), time.Second)),
		ft("updated", "gt", t0.Add(4*time.Hour), time.Second),
		// precedence, grouping, not
		fOr(fc("type", "eq", "SMS"), fAnd(fc("type", "eq", "TOTP"), fc("status", "eq", "V"))),
		fAnd(fOr(fc("type", "eq", "SMS"), fc("type", "eq", "TOTP")), fc("status", "eq", "V")),
		fNot(fOr(fc("type", "eq", "SMS"), fc("fails", "gt", int64(2)))),
		fAnd(fNot(fc("user", "eq", "franck")), fNot(fc("phone", "pr", nil)), fc("fails", "lt", int64(5))),
		fOr(fc("type", "eq", "PIN"), fc("type", "eq", "HOTP"), fc("type", "eq", "EMAIL")),
		fNot(fNot(fc("status", "eq", "L"))),
		fNot(fc("phone", "ne", "+34666555444")),
	}
	for i := range filters {
		f := &filters[i]
		var want []int64
		for j := range all {
			if EvalFilter(f, func(a string) (any, bool) { return DeviceValue(&all[j], a, now) }) {
				want = append(want, all[j].Number)
			}
		}
		got, total, err := s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Filter: f, Limit: 1000, Now: now})
		if err != nil {
			t.Errorf("filter %d %+v: %v", i, *f, err)
			continue
		}
		var nums []int64
		for _, d := range got {
			nums = append(nums, d.Number)
		}
		if !slices.Equal(nums, want) || total != len(want) {
			t.Errorf("filter %d %+v:\n got %v (total %d)\nwant %v", i, *f, nums, total, want)
		}
	}
	// Every filter above selects something different from "all" or "nothing" in at least
	// some cases; make sure the table is not vacuous.
	some := 0
	for i := range filters {
		if _, total, _ := s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Filter: &filters[i], Now: now}); total > 0 && total < len(all) {
			some++
		}
	}
	if some < len(filters)*2/3 {
		t.Errorf("only %d of %d filters select a proper subset: the table tests too little", some, len(filters))
	}
}

func testDeviceQuerySort(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	all := deviceSet(t, s, tn.ID)
	now := t0
	for _, attr := range []string{"number", "name", "type", "status", "user", "fails", "created", "updated", "lastUsed", "phone", "email"} {
		for _, desc := range []bool{false, true} {
			want := slices.Clone(all)
			slices.SortStableFunc(want, func(a, b store.Device) int {
				va, pa := DeviceValue(&a, attr, now)
				vb, pb := DeviceValue(&b, attr, now)
				var c int
				switch {
				case !pa && !pb:
					c = 0
				case !pa:
					c = 1 // absent last when ascending
				case !pb:
					c = -1
				default:
					c = compareValues(va, vb)
				}
				if desc {
					c = -c
				}
				if c == 0 {
					c = cmp.Compare(a.Number, b.Number)
				}
				return c
			})
			got, _, err := s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Sort: &store.SortKey{Attr: attr, Desc: desc}, Limit: 1000, Now: now})
			check(t, err)
			if !slices.EqualFunc(got, want, func(a, b store.Device) bool { return a.Number == b.Number }) {
				t.Errorf("sort by %s desc=%v:\n got %v\nwant %v", attr, desc, numbers(got), numbers(want))
			}
		}
	}
	// Pages: offset and limit over the sorted whole.
	byName := &store.SortKey{Attr: "name"}
	whole, total, err := s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Sort: byName, Limit: 1000, Now: now})
	check(t, err)
	var paged []store.Device
	for off := 0; off < total; off += 5 {
		page, n, err := s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Sort: byName, Offset: off, Limit: 5, Now: now})
		check(t, err)
		if n != total || len(page) > 5 {
			t.Fatalf("page at %d: %d items, total %d", off, len(page), n)
		}
		paged = append(paged, page...)
	}
	if !slices.EqualFunc(paged, whole, func(a, b store.Device) bool { return a.Number == b.Number }) {
		t.Errorf("pages do not add up to the whole: %v vs %v", numbers(paged), numbers(whole))
	}
	page, n, err := s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Offset: 100, Limit: 5, Now: now})
	check(t, err)
	if len(page) != 0 || n != 24 {
		t.Errorf("past the end: %d items, total %d", len(page), n)
	}
	page, n, err = s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Now: now}) // count only
	check(t, err)
	if len(page) != 0 || n != 24 {
		t.Errorf("count only: %d items, total %d", len(page), n)
	}
	page, _, err = s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Limit: store.MaxQueryLimit + 500, Now: now})
	check(t, err)
	if len(page) != 24 {
		t.Errorf("a limit over the maximum: %d items", len(page))
	}
}

func compareValues(a, b any) int {
	switch a := a.(type) {
	case string:
		return strings.Compare(a, b.(string))
	case int64:
		return cmp.Compare(a, b.(int64))
	case time.Time:
		return a.Compare(b.(time.Time))
	case bool:
		switch {
		case a == b.(bool):
			return 0
		case !a:
			return -1
		}
		return 1
	}
	panic(fmt.Sprintf("compareValues %T", a))
}

func numbers(ds []store.Device) []int64 {
	var out []int64
	for _, d := range ds {
		out = append(out, d.Number)
	}
	return out
}

// testDeviceQueryRefuses: trees that name secrets, misuse operators or break the bounds are
// refused with ErrInvalidFilter before any SQL runs.
func testDeviceQueryRefuses(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	deep := fc("type", "eq", "TOTP")
	for range store.MaxFilterDepth {
		deep = fNot(deep)
	}
	var wide []store.Filter
	for range store.MaxFilterNodes {
		wide = append(wide, fc("type", "eq", "TOTP"))
	}
	bad := []store.Filter{
		fc("secret", "sw", "A"), fc("pin", "eq", "1234"), fc("seed", "pr", nil),
		fc("d.secret) OR (1=1", "eq", "x"),
		fc("fails", "co", "1"), fc("fails", "eq", "1"), fc("type", "eq", int64(1)),
		fc("created", "eq", "2021-10-14 06:44:43"), ft("created", "eq", t0, 0),
		fc("type", "eq", nil), fc("type", "xx", "TOTP"), fc("type", "pr", "x"),
		fc("type", "eq", strings.Repeat("x", store.MaxFilterValue+1)),
		{Op: store.FilterAnd, Children: []store.Filter{fc("type", "eq", "TOTP")}},
		{Op: store.FilterNot},
		{Op: "xor", Children: []store.Filter{fc("type", "eq", "TOTP"), fc("type", "eq", "SMS")}},
		deep, fOr(wide...),
	}
	for i := range bad {
		_, _, err := s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Filter: &bad[i], Limit: 10, Now: t0})
		if !errors.Is(err, store.ErrInvalidFilter) {
			t.Errorf("filter %d was not refused as invalid: %v", i, err)
		}
	}
	for _, k := range []store.SortKey{{Attr: "secret"}, {Attr: "number; DROP TABLE devices"}} {
		_, _, err := s.QueryDevices(ctx, tn.ID, store.DeviceQuery{Sort: &k, Limit: 10, Now: t0})
		if !errors.Is(err, store.ErrInvalidFilter) {
			t.Errorf("sort by %q was not refused: %v", k.Attr, err)
		}
	}
}

func testQueryUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	other := newTenant(t, s, "b")
	logins := []string{"ada", "bob", "carol", "dave", "erin"}
	for i, l := range logins {
		u := user(tn.ID, fmt.Sprintf("u-%d", i), l)
		u.Enabled = i%2 == 0
		u.CreatedAt = t0.Add(time.Duration(i) * time.Minute)
		u.UpdatedAt = u.CreatedAt
		if i == 3 {
			u.Email = ""
		}
		check(t, s.CreateUser(ctx, u))
	}
	check(t, s.CreateUser(ctx, user(other.ID, "u-x", "ada")))
	cases := []struct {
		f    store.Filter
		want []string
	}{
		{fc("login", "eq", "ada"), []string{"ada"}},
		{fc("enabled", "eq", true), []string{"ada", "carol", "erin"}},
		{fc("enabled", "eq", false), []string{"bob", "dave"}},
		{fc("enabled", "ne", true), []string{"bob", "dave"}},
		{fNot(fc("email", "pr", nil)), []string{"dave"}},
		{fc("email", "ew", "@example.com"), []string{"ada", "bob", "carol", "erin"}},
		{fOr(fc("login", "sw", "c"), fc("login", "gt", "d")), []string{"carol", "dave", "erin"}},
		{ft("created", "ge", t0.Add(3*time.Minute), time.Second), []string{"dave", "erin"}},
	}
	for _, c := range cases {
		got, total, err := s.QueryUsers(ctx, tn.ID, store.UserQuery{Filter: &c.f, Limit: 100})
		check(t, err)
		var names []string
		for _, u := range got {
			names = append(names, u.Login)
		}
		if !slices.Equal(names, c.want) || total != len(c.want) {
			t.Errorf("users %+v: got %v (total %d), want %v", c.f, names, total, c.want)
		}
	}
	got, total, err := s.QueryUsers(ctx, tn.ID, store.UserQuery{Sort: &store.SortKey{Attr: "login", Desc: true}, Offset: 1, Limit: 2})
	check(t, err)
	if total != 5 || len(got) != 2 || got[0].Login != "dave" || got[1].Login != "carol" {
		t.Errorf("sorted page of users: %v total %d", got, total)
	}
	bad := fc("role", "eq", "admin")
	if _, _, err := s.QueryUsers(ctx, tn.ID, store.UserQuery{Filter: &bad, Limit: 1}); !errors.Is(err, store.ErrInvalidFilter) {
		t.Errorf("filter on a non-listed user attribute: %v", err)
	}
}
