package main

// The OTP device scenarios (SPEC.md §5):
//
//   - totp_verify: POST /v1/users/{id}/devices/{device_id}/verify with the right TOTP code →
//     200 "success":true. Every request uses a device no other request of the run uses (a TOTP
//     device accepts one code per 30-second step), each with its own random seed; the code is
//     computed from the seed at send time. The devices are written straight into the store
//     before the timed phase (enough for the warm-up and the timed run at a calibrated rate).
//   - scim_list: GET /scim2/v1/OtpDevice?filter=user eq "<user>" and type eq "TOTP" over
//     100,000 devices of 10,000 users (written straight into the store; a tenth of that for
//     runs under a second), a random user per request → 200 with that user's TOTP devices and
//     the total.
//
// Both need the store of the otpd they load, so each starts its own in-process otpd (the
// default configuration on SQLite, like the one the other scenarios use); with -addr they
// refuse to run.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/otp"
	"github.com/otpd/otpd/internal/store"
)

func init() {
	register("totp_verify", totpVerifyScenario)
	register("scim_list", scimListScenario)
}

// ScimDevices and ScimUsers size the scim_list population. Runs shorter than a second (the
// smoke test, which runs under -race in CI) use a tenth of it, so seeding does not dominate
// them; the scenario says which population it used.
const (
	ScimDevices = 100_000
	ScimUsers   = 10_000
)

func scimPopulation(o options) (devices, users int) {
	if o.duration < time.Second {
		return ScimDevices / 10, ScimUsers / 10
	}
	return ScimDevices, ScimUsers
}

var errNeedsInProcess = errors.New("this scenario writes its devices straight into the store, so it needs the in-process otpd (run it without -addr)")

// devServer is an in-process otpd whose store the scenario can write to.
type devServer struct {
	a      *app.App
	addr   string
	apiKey string
	stop   func() error
}

func startDevServer(ctx context.Context, logw io.Writer) (*devServer, error) {
	dir, err := os.MkdirTemp("", "otpd-bench-devices-")
	if err != nil {
		return nil, err
	}
	_, apiKey, err := keys.NewAPIKey()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := benchConfig(dir, apiKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.Addr = ln.Addr().String()
	var (
		a    *app.App
		done = make(chan error, 1)
	)
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	pprof.Do(sctx, pprof.Labels("side", "server"), func(sctx context.Context) {
		if a, err = app.Open(sctx, c, app.NewLogger(c, logw), app.Options{}); err != nil {
			return
		}
		go func() { done <- a.Serve(sctx, ln) }()
	})
	if err != nil {
		cancel()
		ln.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start otpd: %w", err)
	}
	return &devServer{a: a, addr: c.Addr, apiKey: apiKey, stop: func() error {
		cancel()
		err := <-done
		err = errors.Join(err, a.Close())
		return errors.Join(err, os.RemoveAll(dir))
	}}, nil
}

// seedUsers writes n users named bench-user-00000… straight into the store.
func (s *devServer) seedUsers(ctx context.Context, n int) ([]store.User, error) {
	now := time.Now().UTC()
	users := make([]store.User, n)
	for i := range users {
		users[i] = store.User{TenantID: s.a.TenantID, Login: fmt.Sprintf("bench-user-%05d", i), Enabled: true,
			Language: "en", Role: "user", CreatedAt: now, UpdatedAt: now}
	}
	for lo := 0; lo < n; lo += 2000 {
		err := s.a.Store.InTx(ctx, func(q store.Queries) error {
			for i := lo; i < min(n, lo+2000); i++ {
				if err := q.CreateUser(ctx, &users[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return users, nil
}

// seedDevices writes devices straight into the store, 2,000 per transaction.
func (s *devServer) seedDevices(ctx context.Context, ds []store.Device) error {
	for lo := 0; lo < len(ds); lo += 2000 {
		err := s.a.Store.InTx(ctx, func(q store.Queries) error {
			for i := lo; i < min(len(ds), lo+2000); i++ {
				if err := q.CreateDevice(ctx, &ds[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// verifyItem is one device of the totp_verify pool.
type verifyItem struct {
	path string
	seed []byte
}

type verifyPool struct {
	items []verifyItem
	next  atomic.Int64
}

func (p *verifyPool) left() int { return max(0, len(p.items)-int(p.next.Load())) }

// verifier computes each device's current code as it sends it.
type verifier struct {
	p   *verifyPool
	buf []byte
}

func (v *verifier) next(r *reqState) bool {
	i := v.p.next.Add(1) - 1
	if i >= int64(len(v.p.items)) {
		return false
	}
	it := v.p.items[i]
	code, _, err := otp.TOTP(it.seed, time.Now(), 30*time.Second, 6, otp.SHA1)
	if err != nil {
		return false
	}
	r.req.URL.Path = it.path
	v.buf = append(append(append(v.buf[:0], `{"code":"`...), code...), `"}`...)
	r.setBody(v.buf)
	return true
}

// fillVerifyPool writes n TOTP devices with fresh random seeds, spread over users, and adds
// them to p.
func (s *devServer) fillVerifyPool(ctx context.Context, p *verifyPool, users []store.User, n int) error {
	now := time.Now().UTC()
	ds := make([]store.Device, n)
	items := make([]verifyItem, n)
	for i := range ds {
		seed := make([]byte, 20)
		if _, err := rand.Read(seed); err != nil {
			return err
		}
		u := users[(len(p.items)+i)%len(users)]
		d := store.Device{ID: newUUID(), TenantID: s.a.TenantID, UserID: u.ID, Type: store.DeviceTOTP,
			Name: "bench", Status: store.DeviceValidated, Algorithm: "SHA1", Digits: 6, Period: 30 * time.Second,
			LastStep: -1, CreatedAt: now, UpdatedAt: now, ValidatedAt: &now}
		sealed, err := s.a.Engine.SealDeviceSecret(d.ID, seed)
		if err != nil {
			return err
		}
		d.Secret = sealed
		ds[i] = d
		items[i] = verifyItem{path: "/v1/users/" + u.ID + "/devices/" + d.ID + "/verify", seed: seed}
	}
	if err := s.seedDevices(ctx, ds); err != nil {
		return err
	}
	p.items = append(p.items, items...)
	return nil
}

func totpVerifyScenario(ctx context.Context, o options, _ target, _ string, progress func(string, ...any)) (*result, error) {
	if o.addr != "" {
		return nil, errNeedsInProcess
	}
	s, err := startDevServer(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	users, err := s.seedUsers(ctx, 1000)
	if err != nil {
		return nil, err
	}
	t := target{rt: newTransport(o.concurrency), scheme: "http", host: s.addr,
		headers: http.Header{"Content-Type": {"application/json"}, "X-Api-Key": {s.apiKey}}}
	defer t.rt.(*http.Transport).CloseIdleConnections()
	l := load{worker: nil, want: http.StatusOK, wantBody: []byte(`"success":true`)}
	p := &verifyPool{}
	l.worker = func(int) source { return &verifier{p: p, buf: make([]byte, 0, 32)} }

	calib := min(time.Second, o.duration)
	calibN := max(64*o.concurrency, 2000)
	progress("totp_verify: writing %d devices for a %s calibration", calibN, calib)
	t0 := time.Now()
	if err := s.fillVerifyPool(ctx, p, users, calibN); err != nil {
		return nil, err
	}
	seedRate := float64(calibN) / time.Since(t0).Seconds()
	cal := generate(ctx, t, l, o.concurrency, calib)
	if cal.errs > 0 {
		return nil, fmt.Errorf("calibration failed: %s", cal.errorSummary())
	}
	rate := float64(cal.ok) / cal.elapsed.Seconds()
	need := int(math.Ceil(rate*(o.warmup+o.duration).Seconds()*1.5)) + 4*o.concurrency - p.left()
	if need > 0 {
		progress("totp_verify: calibration %.0f verifies/s; writing %d more devices (about %.0fs)", rate, need, float64(need)/seedRate)
		if err := s.fillVerifyPool(ctx, p, users, need); err != nil {
			return nil, err
		}
	}
	progress("totp_verify: %d devices ready; %s warm-up, %s timed", p.left(), o.warmup, o.duration)
	return timed(ctx, o, "totp_verify", t, l)
}

// lister asks for a random user's TOTP devices.
type lister struct {
	queries []string
	i       int
}

func (l *lister) next(r *reqState) bool {
	r.req.Method = http.MethodGet
	r.req.URL.Path = "/scim2/v1/OtpDevice"
	r.req.URL.RawQuery = l.queries[l.i%len(l.queries)]
	r.req.Body = http.NoBody
	r.req.ContentLength = 0
	l.i++
	return true
}

func scimListScenario(ctx context.Context, o options, _ target, _ string, progress func(string, ...any)) (*result, error) {
	if o.addr != "" {
		return nil, errNeedsInProcess
	}
	s, err := startDevServer(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	nDevices, nUsers := scimPopulation(o)
	progress("scim_list: writing %d users and %d devices", nUsers, nDevices)
	t0 := time.Now()
	users, err := s.seedUsers(ctx, nUsers)
	if err != nil {
		return nil, err
	}
	if err := s.seedScimDevices(ctx, users, nDevices); err != nil {
		return nil, err
	}
	progress("scim_list: population written in %.1fs", time.Since(t0).Seconds())
	t := target{rt: newTransport(o.concurrency), scheme: "http", host: s.addr,
		headers: http.Header{"Authorization": {"Bearer " + s.apiKey}}}
	defer t.rt.(*http.Transport).CloseIdleConnections()
	l := load{want: http.StatusOK, wantBody: []byte(`"Resources":[{`), worker: func(i int) source {
		// Each worker walks its own shuffled sequence of users.
		qs := make([]string, 4096)
		var b [2]byte
		for j := range qs {
			_, _ = rand.Read(b[:])
			u := (int(b[0])<<8 | int(b[1])) * nUsers >> 16
			qs[j] = "filter=" + url.QueryEscape(fmt.Sprintf(`user eq "bench-user-%05d" and type eq "TOTP"`, u))
		}
		return &lister{queries: qs, i: i}
	}}
	progress("scim_list: %s warm-up, %s timed", o.warmup, o.duration)
	return timed(ctx, o, "scim_list", t, l)
}

// seedScimDevices writes n devices over users: with ten per user, each user gets two TOTP
// devices and two of each other type, the statuses in rotation.
func (s *devServer) seedScimDevices(ctx context.Context, users []store.User, n int) error {
	now := time.Now().UTC()
	types := []string{store.DeviceTOTP, store.DeviceSMS, store.DeviceTOTP, store.DeviceEMAIL, store.DevicePIN,
		store.DeviceHOTP, store.DeviceSMS, store.DeviceEMAIL, store.DevicePIN, store.DeviceHOTP}
	statuses := []string{store.DeviceValidated, store.DeviceCreated, store.DeviceDisabled, store.DeviceValidated}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	const chunk = 20_000
	for lo := 0; lo < n; lo += chunk {
		ds := make([]store.Device, 0, chunk)
		for i := lo; i < min(n, lo+chunk); i++ {
			u := users[i%len(users)]
			typ := types[(i/len(users))%len(types)]
			d := store.Device{ID: newUUID(), TenantID: s.a.TenantID, UserID: u.ID, Type: typ, Status: statuses[i%len(statuses)],
				Name: fmt.Sprintf("%s%08d", typ, i), LastStep: -1, CreatedAt: now.Add(time.Duration(i) * time.Millisecond), UpdatedAt: now}
			switch typ {
			case store.DeviceSMS:
				d.Phone = fmt.Sprintf("+3466%07d", i)
				d.Name = "SMS message to " + engine.MaskPhone(d.Phone)
			case store.DeviceEMAIL:
				d.Email = fmt.Sprintf("user%d@example.com", i)
				d.Name = "Email message to " + engine.MaskEmail(d.Email)
			case store.DeviceTOTP, store.DeviceHOTP:
				d.Algorithm, d.Digits, d.Period, d.Secret = "SHA1", 6, 30*time.Second, []byte("not a real seed: never verified")
			}
			ds = append(ds, d)
		}
		wg.Go(func() {
			if err := s.seedDevices(ctx, ds); err != nil {
				select {
				case errc <- err:
				default:
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func newUUID() string { return uuid.Must(uuid.NewV7()).String() }
