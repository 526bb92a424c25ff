package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// testMessaging is the conformance suite of store.MessagingQueries: templates, prices, tenant
// messaging settings, the BSG session index, numbered messages and daily counters.
func testMessaging(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Templates", testTemplates},
		{"TemplateList", testTemplateList},
		{"Prices", testPrices},
		{"Settings", testMessagingSettings},
		{"Sessions", testMessagingSessions},
		{"SessionsPurged", testMessagingSessionsPurged},
		{"PendingCount", testPendingCount},
		{"PendingCountRaceTwoInstances", testPendingCountRace},
		{"NumberedMessages", testNumberedMessages},
		{"DailyCounts", testDailyCounts},
		{"DailyCountsRaceTwoInstances", testDailyCountsRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func template(tenantID, name string) *store.Template {
	return &store.Template{TenantID: tenantID, Name: name, Text: "Your code is {code2fa}",
		Countries: []string{"UA", "PT"}, Status: store.TemplateApproved, CreatedAt: t0, UpdatedAt: t0}
}

func testTemplates(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn, tb := newTenant(t, s, "a"), newTenant(t, s, "b")

	_, err := s.GetDefaultTemplate(ctx, tn.ID)
	wantErr(t, err, store.ErrNotFound)
	def := template(tn.ID, "default")
	def.Default, def.Countries = true, nil
	check(t, s.CreateTemplate(ctx, def))
	again := template(tn.ID, "another default")
	again.Default = true
	wantErr(t, s.CreateTemplate(ctx, again), store.ErrAlreadyExists)

	a := template(tn.ID, "login")
	a.CreatedAt = t0.Add(123456 * time.Nanosecond)
	check(t, s.CreateTemplate(ctx, a))
	if a.ID <= def.ID || a.Version != 1 || a.CreatedAt != t0 {
		t.Errorf("created: id %d (default %d), version %d, created %v", a.ID, def.ID, a.Version, a.CreatedAt)
	}
	got, err := s.GetTemplate(ctx, tn.ID, a.ID)
	check(t, err)
	diff(t, "template", a, got)
	gotDef, err := s.GetDefaultTemplate(ctx, tn.ID)
	check(t, err)
	diff(t, "default template", def, gotDef)
	if gotDef.Countries != nil {
		t.Errorf("no countries should read back as nil, got %q", gotDef.Countries)
	}

	// Names are unique among live templates of a tenant, not across tenants.
	wantErr(t, s.CreateTemplate(ctx, template(tn.ID, "login")), store.ErrAlreadyExists)
	other := template(tb.ID, "login")
	check(t, s.CreateTemplate(ctx, other))
	_, err = s.GetTemplate(ctx, tn.ID, other.ID)
	wantErr(t, err, store.ErrNotFound)

	// Update with compare-and-swap.
	stale := *a
	a.Status, a.Text, a.Countries, a.UpdatedAt = store.TemplateDeleted, "Code: {code2fa}", []string{"FR"}, t0.Add(time.Minute)
	check(t, s.UpdateTemplate(ctx, a))
	if a.Version != 2 {
		t.Errorf("version after update: %d", a.Version)
	}
	stale.Name = "stale"
	wantErr(t, s.UpdateTemplate(ctx, &stale), store.ErrConflict)
	got, err = s.GetTemplate(ctx, tn.ID, a.ID)
	check(t, err)
	diff(t, "updated template", a, got)
	missing := template(tn.ID, "x")
	missing.ID, missing.Version = 999999, 1
	wantErr(t, s.UpdateTemplate(ctx, missing), store.ErrNotFound)

	// A deleted template frees its name.
	check(t, s.CreateTemplate(ctx, template(tn.ID, "login")))
	n, err := s.CountTemplates(ctx, tn.ID, store.TemplateApproved)
	check(t, err)
	if n != 2 {
		t.Errorf("approved templates: %d, want 2 (default and the new login)", n)
	}
	if n, _ := s.CountTemplates(ctx, tn.ID, store.TemplateDeleted); n != 1 {
		t.Errorf("deleted templates: %d", n)
	}
}

func testTemplateList(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn, tb := newTenant(t, s, "a"), newTenant(t, s, "b")
	names := []string{"delta", "Alpha", "charlie", "bravo", "echo"}
	statuses := []string{store.TemplateApproved, store.TemplateRequested, store.TemplateApproved, store.TemplateRejected, store.TemplateRequested}
	var ids []int64
	for i, name := range names {
		tp := template(tn.ID, name)
		tp.Status = statuses[i]
		tp.UpdatedAt = t0.Add(time.Duration(len(names)-i) * time.Minute)
		check(t, s.CreateTemplate(ctx, tp))
		ids = append(ids, tp.ID)
	}
	check(t, s.CreateTemplate(ctx, template(tb.ID, "foreign")))

	list := func(f store.TemplateFilter) ([]string, int) {
		t.Helper()
		ts, total, err := s.ListTemplates(ctx, tn.ID, f)
		check(t, err)
		var out []string
		for _, tp := range ts {
			out = append(out, tp.Name)
		}
		return out, total
	}
	cases := []struct {
		f     store.TemplateFilter
		want  []string
		total int
	}{
		{store.TemplateFilter{}, names, 5},
		{store.TemplateFilter{Desc: true}, []string{"echo", "bravo", "charlie", "Alpha", "delta"}, 5},
		{store.TemplateFilter{Sort: "name"}, []string{"Alpha", "bravo", "charlie", "delta", "echo"}, 5}, // byte order
		{store.TemplateFilter{Sort: "updated_at"}, []string{"echo", "bravo", "charlie", "Alpha", "delta"}, 5},
		{store.TemplateFilter{Sort: "status", Desc: true}, []string{"echo", "Alpha", "bravo", "charlie", "delta"}, 5},
		{store.TemplateFilter{Status: store.TemplateRequested}, []string{"Alpha", "echo"}, 2},
		{store.TemplateFilter{IDs: []int64{ids[4], ids[0]}}, []string{"delta", "echo"}, 2},
		{store.TemplateFilter{Limit: 2, Offset: 1}, []string{"Alpha", "charlie"}, 5},
		{store.TemplateFilter{Limit: 2, Offset: 4}, []string{"echo"}, 5},
		{store.TemplateFilter{Offset: 9}, nil, 5},
	}
	for _, c := range cases {
		got, total := list(c.f)
		if !slices.Equal(got, c.want) || total != c.total {
			t.Errorf("%+v: got %q (total %d), want %q (total %d)", c.f, got, total, c.want, c.total)
		}
	}
	if _, _, err := s.ListTemplates(ctx, tn.ID, store.TemplateFilter{Sort: "text; DROP TABLE templates"}); err == nil {
		t.Error("an unknown sort key was accepted")
	}
}

func testPrices(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn, tb := newTenant(t, s, "a"), newTenant(t, s, "b")
	_, err := s.GetPrice(ctx, tn.ID, "sms", "FR")
	wantErr(t, err, store.ErrNotFound)
	p := &store.Price{TenantID: tn.ID, Channel: "sms", Country: "FR", Price: "0.0642918", UpdatedAt: t0}
	check(t, s.PutPrice(ctx, p))
	check(t, s.PutPrice(ctx, &store.Price{TenantID: tn.ID, Channel: "viber", Country: "AU", Price: "0.01", UpdatedAt: t0}))
	check(t, s.PutPrice(ctx, &store.Price{TenantID: tb.ID, Channel: "sms", Country: "FR", Price: "9", UpdatedAt: t0}))
	p.Price, p.UpdatedAt = "0.05", t0.Add(time.Hour)
	check(t, s.PutPrice(ctx, p)) // replaces
	got, err := s.GetPrice(ctx, tn.ID, "sms", "FR")
	check(t, err)
	diff(t, "price", p, got)
	all, err := s.ListPrices(ctx, tn.ID)
	check(t, err)
	if len(all) != 2 || all[0].Channel != "sms" || all[1].Channel != "viber" {
		t.Errorf("list: %+v", all)
	}
	check(t, s.DeletePrice(ctx, tn.ID, "sms", "FR"))
	wantErr(t, s.DeletePrice(ctx, tn.ID, "sms", "FR"), store.ErrNotFound)
	if got, err := s.GetPrice(ctx, tb.ID, "sms", "FR"); err != nil || got.Price != "9" {
		t.Errorf("other tenant's price: %v %v", got, err)
	}
}

func testMessagingSettings(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	_, err := s.GetMessagingSettings(ctx, tn.ID)
	wantErr(t, err, store.ErrNotFound)
	ms := &store.MessagingSettings{TenantID: tn.ID, Settings: `{"moderation":true}`, UpdatedAt: t0}
	check(t, s.PutMessagingSettings(ctx, ms))
	if ms.Version != 1 {
		t.Fatalf("version after insert: %d", ms.Version)
	}
	// A second insert (someone else's, racing) conflicts instead of overwriting.
	wantErr(t, s.PutMessagingSettings(ctx, &store.MessagingSettings{TenantID: tn.ID, Settings: `{}`, UpdatedAt: t0}), store.ErrConflict)
	stale := *ms
	ms.Settings, ms.UpdatedAt = `{"moderation":false}`, t0.Add(time.Minute)
	check(t, s.PutMessagingSettings(ctx, ms))
	wantErr(t, s.PutMessagingSettings(ctx, &stale), store.ErrConflict)
	got, err := s.GetMessagingSettings(ctx, tn.ID)
	check(t, err)
	diff(t, "settings", ms, got)
}

// sessionChallenge creates a challenge with a BSG session row.
func sessionChallenge(t *testing.T, s store.Store, tenantID, id, country string, created time.Time, mut func(c *store.Challenge)) *store.Challenge {
	t.Helper()
	ctx := context.Background()
	c := challenge(tenantID, id, created)
	if mut != nil {
		mut(c)
	}
	check(t, s.InTx(ctx, func(q store.Queries) error {
		if err := q.CreateChallenge(ctx, c); err != nil {
			return err
		}
		return q.CreateMessagingSession(ctx, &store.MessagingSession{TenantID: tenantID, ChallengeID: id,
			CountryCode: country, CreatedAt: created})
	}))
	return c
}

func testMessagingSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn, tb := newTenant(t, s, "a"), newTenant(t, s, "b")
	fin := func(status string, at time.Time) func(c *store.Challenge) {
		return func(c *store.Challenge) { c.Status, c.FinishedAt = status, &at }
	}
	sessionChallenge(t, s, tn.ID, "ch-1", "AU", t0, func(c *store.Challenge) { c.Recipient = "+61401629754" })
	sessionChallenge(t, s, tn.ID, "ch-2", "FR", t0.Add(time.Minute), fin(store.StatusVerified, t0.Add(3*time.Minute)))
	sessionChallenge(t, s, tn.ID, "ch-3", "DE", t0.Add(2*time.Minute), func(c *store.Challenge) {
		c.Channel = "viber"
		fin(store.StatusCanceled, t0.Add(2*time.Minute))(c)
	})
	sessionChallenge(t, s, tn.ID, "ch-4", "AU", t0.Add(24*time.Hour), nil) // outside the day
	sessionChallenge(t, s, tb.ID, "ch-5", "AU", t0, nil)                   // other tenant
	newChallenge(t, s, tn.ID, "ch-6", t0)                                  // not a BSG session

	got, err := s.GetMessagingSession(ctx, tn.ID, "ch-2")
	check(t, err)
	diff(t, "session", &store.MessagingSession{TenantID: tn.ID, ChallengeID: "ch-2", CountryCode: "FR", CreatedAt: t0.Add(time.Minute)}, got)
	_, err = s.GetMessagingSession(ctx, tn.ID, "ch-6")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetMessagingSession(ctx, tn.ID, "ch-5")
	wantErr(t, err, store.ErrNotFound)

	day := store.MessagingSessionFilter{From: t0, To: t0.Add(24 * time.Hour)}
	with := func(mut func(f *store.MessagingSessionFilter)) store.MessagingSessionFilter {
		f := day
		mut(&f)
		return f
	}
	cases := []struct {
		name  string
		f     store.MessagingSessionFilter
		want  []string
		total int
	}{
		{"day", day, []string{"ch-1", "ch-2", "ch-3"}, 3},
		{"desc", with(func(f *store.MessagingSessionFilter) { f.Desc = true }), []string{"ch-3", "ch-2", "ch-1"}, 3},
		{"country", with(func(f *store.MessagingSessionFilter) { f.CountryCode = "AU" }), []string{"ch-1"}, 1},
		{"status", with(func(f *store.MessagingSessionFilter) { f.Status = store.StatusVerified }), []string{"ch-2"}, 1},
		{"channel", with(func(f *store.MessagingSessionFilter) { f.Channel = "viber" }), []string{"ch-3"}, 1},
		{"recipient", with(func(f *store.MessagingSessionFilter) { f.Recipient = "+61401629754" }), []string{"ch-1"}, 1},
		{"ids", with(func(f *store.MessagingSessionFilter) { f.IDs = []string{"ch-3", "ch-1", "ch-5"} }), []string{"ch-1", "ch-3"}, 2},
		{"unstorable id", with(func(f *store.MessagingSessionFilter) { f.IDs = []string{"ch-1\x00"} }), nil, 0},
		{"unstorable recipient", with(func(f *store.MessagingSessionFilter) { f.Recipient = "+61\xff" }), nil, 0},
		{"sort country", with(func(f *store.MessagingSessionFilter) { f.Sort = "country_code" }), []string{"ch-1", "ch-3", "ch-2"}, 3},
		{"sort status desc", with(func(f *store.MessagingSessionFilter) { f.Sort, f.Desc = "status", true }), []string{"ch-2", "ch-1", "ch-3"}, 3},
		{"sort finished, pending last", with(func(f *store.MessagingSessionFilter) { f.Sort = "finished_at" }), []string{"ch-3", "ch-2", "ch-1"}, 3},
		{"sort created desc", with(func(f *store.MessagingSessionFilter) { f.Sort, f.Desc = "created_at", true }), []string{"ch-3", "ch-2", "ch-1"}, 3},
		{"page", with(func(f *store.MessagingSessionFilter) { f.Limit, f.Offset = 1, 1 }), []string{"ch-2"}, 3},
		{"past the end", with(func(f *store.MessagingSessionFilter) { f.Offset = 3 }), nil, 3},
		{"no period", store.MessagingSessionFilter{}, []string{"ch-1", "ch-2", "ch-3", "ch-4"}, 4},
	}
	for _, c := range cases {
		rows, total, err := s.ListMessagingSessions(ctx, tn.ID, c.f)
		check(t, err)
		var ids []string
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		if !slices.Equal(ids, c.want) || total != c.total {
			t.Errorf("%s: got %q (total %d), want %q (total %d)", c.name, ids, total, c.want, c.total)
		}
		for _, r := range rows {
			if r.TenantID != tn.ID || r.CountryCode == "" || r.CodeLength != 6 {
				t.Errorf("%s: row %+v", c.name, r)
			}
		}
	}
	if _, _, err := s.ListMessagingSessions(ctx, tn.ID, store.MessagingSessionFilter{Sort: "id; --"}); err == nil {
		t.Error("an unknown sort key was accepted")
	}
}

// testMessagingSessionsPurged: the janitor's purge of a finished challenge takes its session row
// with it.
func testMessagingSessionsPurged(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	at := t0.Add(time.Minute)
	sessionChallenge(t, s, tn.ID, "ch-1", "AU", t0, func(c *store.Challenge) { c.Status, c.FinishedAt = store.StatusVerified, &at })
	sessionChallenge(t, s, tn.ID, "ch-2", "AU", t0, nil)
	_, err := s.Purge(ctx, store.PurgePolicy{ChallengesFinishedBefore: t0.Add(time.Hour)})
	check(t, err)
	_, err = s.GetMessagingSession(ctx, tn.ID, "ch-1")
	wantErr(t, err, store.ErrNotFound)
	rows, total, err := s.ListMessagingSessions(ctx, tn.ID, store.MessagingSessionFilter{})
	check(t, err)
	if total != 1 || len(rows) != 1 || rows[0].ID != "ch-2" {
		t.Errorf("after purge: %d %v", total, rows)
	}
}

func testPendingCount(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn := newTenant(t, s, "a")
	count := func(app, to string, now time.Time) int {
		t.Helper()
		n, err := s.CountPendingChallenges(ctx, tn.ID, app, to, now)
		check(t, err)
		return n
	}
	newChallenge(t, s, tn.ID, "ch-1", t0) // app-1, +15550100001, pending until t0+5m
	c2 := challenge(tn.ID, "ch-2", t0)
	c2.Status, c2.FinishedAt = store.StatusVerified, &t0
	check(t, s.CreateChallenge(ctx, c2))
	if n := count("app-1", "+15550100001", t0); n != 1 {
		t.Errorf("pending: %d, want 1", n)
	}
	if n := count("app-2", "+15550100001", t0); n != 0 {
		t.Errorf("other application: %d", n)
	}
	if n := count("app-1", "+15550100002", t0); n != 0 {
		t.Errorf("other recipient: %d", n)
	}
	if n := count("app-1", "+15550100001", t0.Add(5*time.Minute)); n != 0 {
		t.Errorf("past its lifetime the session no longer counts: %d", n)
	}
}

// testPendingCountRace: 40 transactions over two instances each count, and create a session
// when there is none. The count serialises them: exactly one creates.
func testPendingCountRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	stores := []store.Store{s, sibling(t, s)}
	tn := newTenant(t, s, "a")
	var created atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 40 {
		st := stores[i%2]
		wg.Go(func() {
			<-start
			made := false
			err := st.InTx(ctx, func(q store.Queries) error {
				made = false
				n, err := q.CountPendingChallenges(ctx, tn.ID, "app-1", "+15550100001", t0)
				if err != nil || n > 0 {
					return err
				}
				made = true
				return q.CreateChallenge(ctx, challenge(tn.ID, fmt.Sprintf("ch-%02d", i), t0))
			})
			if err != nil {
				t.Errorf("goroutine %d: %v", i, err)
			}
			if err == nil && made {
				created.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := created.Load(); n != 1 {
		t.Errorf("%d sessions created, want exactly 1", n)
	}
}

func testNumberedMessages(t *testing.T, s store.Store) {
	ctx := context.Background()
	stores := []store.Store{s, sibling(t, s)}
	tn, tb := newTenant(t, s, "a"), newTenant(t, s, "b")
	newChallenge(t, s, tn.ID, "ch-1", t0)
	newChallenge(t, s, tn.ID, "ch-2", t0)
	newChallenge(t, s, tb.ID, "ch-3", t0)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			ch := []string{"ch-1", "ch-2"}[i%2]
			m := message(tn.ID, fmt.Sprintf("m-%02d", i), ch, t0.Add(time.Duration(i)*time.Millisecond))
			check(t, stores[i%2].CreateMessage(ctx, m))
		})
	}
	wg.Wait()
	newMessage(t, s, tb.ID, "m-other", "ch-3", t0)

	msgs, err := s.ListNumberedMessages(ctx, tn.ID, []string{"ch-1", "ch-2", "ch-3"})
	check(t, err)
	if len(msgs) != 20 {
		t.Fatalf("%d messages, want 20 (not the other tenant's)", len(msgs))
	}
	seen := map[int64]bool{}
	for i, m := range msgs {
		if m.Num <= 0 || seen[m.Num] {
			t.Errorf("message %s has number %d (zero or repeated)", m.ID, m.Num)
		}
		seen[m.Num] = true
		if want := fmt.Sprintf("m-%02d", i); m.ID != want || m.Channel != "sms" || m.TenantID != tn.ID {
			t.Errorf("message %d: %s, want %s (oldest first)", i, m.ID, want)
		}
	}
	one, err := s.ListNumberedMessages(ctx, tn.ID, []string{"ch-1"})
	check(t, err)
	if len(one) != 10 {
		t.Errorf("ch-1: %d messages", len(one))
	}
	none, err := s.ListNumberedMessages(ctx, tn.ID, nil)
	check(t, err)
	if len(none) != 0 {
		t.Errorf("no challenges: %d messages", len(none))
	}
}

func testDailyCounts(t *testing.T, s store.Store) {
	ctx := context.Background()
	tn, tb := newTenant(t, s, "a"), newTenant(t, s, "b")
	add := func(tenantID string, c store.DailyCount) bool {
		t.Helper()
		ok, err := s.AddDailyCount(ctx, tenantID, c)
		check(t, err)
		return ok
	}
	dc := store.DailyCount{Scope: "dial_code", Key: "61", Day: 20000, Count: 1, CapCount: 2}
	if !add(tn.ID, dc) || !add(tn.ID, dc) || add(tn.ID, dc) {
		t.Error("cap of 2: want ok, ok, refused")
	}
	if !add(tb.ID, dc) {
		t.Error("another tenant has its own counter")
	}
	other := dc
	other.Key = "33"
	if !add(tn.ID, other) {
		t.Error("another key has its own counter")
	}
	next := dc
	next.Day++
	if !add(tn.ID, next) {
		t.Error("a new day starts from zero")
	}
	// Amounts: 100 + 150 fits a cap of 250; another 1 does not; a single amount over the cap is
	// refused before it starts a row.
	sp := store.DailyCount{Scope: "spend", Key: "", Day: 20000, Count: 1, Amount: 100, CapAmount: 250}
	if !add(tn.ID, sp) {
		t.Error("first spend refused")
	}
	sp.Amount = 150
	if !add(tn.ID, sp) {
		t.Error("spend up to the cap refused")
	}
	sp.Amount = 1
	if add(tn.ID, sp) {
		t.Error("spend over the cap accepted")
	}
	big := store.DailyCount{Scope: "spend", Key: "", Day: 20001, Count: 1, Amount: 300, CapAmount: 250}
	if add(tn.ID, big) {
		t.Error("a single amount over the cap accepted")
	}
	// No cap: always ok. Large values (over 32 bits) work on both backends.
	free := store.DailyCount{Scope: "spend", Key: "x", Day: 20000, Count: 1, Amount: 5_000_000_000_000}
	if !add(tn.ID, free) || !add(tn.ID, free) {
		t.Error("uncapped counter refused")
	}
	capped := free
	capped.Key, capped.CapAmount = "y", 7_000_000_000_000
	if !add(tn.ID, capped) || add(tn.ID, capped) {
		t.Error("a cap above 2^32: want ok, then refused")
	}
	if _, err := s.AddDailyCount(ctx, tn.ID, store.DailyCount{Scope: "x", Count: -1}); err == nil {
		t.Error("a negative count was accepted")
	}
}

// testDailyCountsRace: 60 additions over two instances against a cap of 25 → exactly 25 succeed.
func testDailyCountsRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	stores := []store.Store{s, sibling(t, s)}
	tn := newTenant(t, s, "a")
	var ok atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 60 {
		st := stores[i%2]
		wg.Go(func() {
			<-start
			var got bool
			err := st.InTx(ctx, func(q store.Queries) error {
				var err error
				got, err = q.AddDailyCount(ctx, tn.ID, store.DailyCount{Scope: "dial_code", Key: "61", Day: 20000, Count: 1, CapCount: 25})
				return err
			})
			if err != nil {
				t.Errorf("goroutine %d: %v", i, err)
			}
			if err == nil && got {
				ok.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := ok.Load(); n != 25 {
		t.Errorf("%d additions succeeded against a cap of 25", n)
	}
}
