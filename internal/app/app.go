// Package app wires otpd together: it opens and migrates the store, loads the master key,
// bootstraps the default tenant, builds the engine, the delivery worker and the HTTP API, and
// runs them until the context ends, then shuts down gracefully (in-flight requests and
// deliveries finish).
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/otpd/otpd/internal/api"
	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store/sqlstore"
)

// App is a wired otpd.
type App struct {
	Config   config.Config
	Log      *slog.Logger
	Store    *sqlstore.Store
	Keys     *keys.Keyring
	Engine   *engine.Engine
	API      *api.Server
	Worker   *deliver.Worker
	Registry *prometheus.Registry
	// TenantID is the default tenant; AdminKey is set only on the start that created it.
	TenantID string
	AdminKey string

	delivery *delivery // providers (delivery.go)
}

// Options adjust wiring for tests.
type Options struct {
	Clock clock.Clock
}

// NewLogger builds the JSON (or text) slog logger the config asks for.
func NewLogger(c config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Open builds everything but starts nothing. Close releases it.
func Open(ctx context.Context, c config.Config, log *slog.Logger, o Options) (*App, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	a := &App{Config: c, Log: log, Registry: prometheus.NewRegistry()}
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if !c.Postgres() {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	}
	kr, err := loadKeyring(c)
	if err != nil {
		return nil, err
	}
	a.Keys = kr

	st, err := sqlstore.Open(ctx, c.DSN())
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	a.Store = st
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	if err := checkMasterKey(ctx, st, kr); err != nil {
		st.Close()
		return nil, err
	}

	a.delivery, err = openDelivery(c, st, kr, log) // delivery.go
	if err != nil {
		st.Close()
		return nil, err
	}
	a.Worker = a.delivery.newWorker(st, kr, o.Clock, log, a.Registry)
	a.Engine, err = engine.New(engine.Options{Store: st, Keys: kr, Clock: o.Clock, Config: c.Policy,
		Logger: log, Channels: a.delivery.channels, Notify: a.Worker.Notify, Metrics: engine.NewMetrics(a.Registry),
		Delivery: a.delivery.engineOptions()})
	if err != nil {
		st.Close()
		return nil, err
	}
	a.delivery.wire(a.Engine, a.Worker)
	if a.TenantID, a.AdminKey, err = a.Engine.Bootstrap(ctx, c.BootstrapAPIKey); err != nil {
		st.Close()
		return nil, err
	}
	var trusted []netip.Prefix
	for _, p := range c.TrustedProxies {
		trusted = append(trusted, netip.MustParsePrefix(strings.TrimSpace(p))) // validated above
	}
	a.API = api.New(api.Options{Engine: a.Engine, Logger: log, Registry: a.Registry,
		DevInbox: c.LogProviderOn(), Ready: st.Ping, TrustedProxies: trusted})
	if err := a.mountSurfaces(); err != nil {
		st.Close()
		return nil, err
	}
	return a, nil
}

// Close releases the store and the providers' connections.
func (a *App) Close() error {
	a.delivery.close()
	return a.Store.Close()
}

// Serve runs the HTTP server on ln, the delivery worker and the janitor until ctx ends, then
// shuts down: no new connections, in-flight requests finish (up to ShutdownTimeout), the worker
// records its in-flight deliveries.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.API,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(a.Log.Handler(), slog.LevelWarn),
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.Worker.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
			a.Log.Error("delivery worker stopped", "err", err)
		}
	})
	wg.Go(func() { a.Engine.RunJanitor(bg, a.Config.JanitorInterval) })

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.Log.Info("otpd serving", "addr", ln.Addr().String(), "database", a.Store.Dialect(),
		"log_provider", a.Config.LogProviderOn())

	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		a.Log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
		err = srv.Shutdown(sctx)
		cancel()
	}
	stopBG()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// checkMasterKey makes sure the database and this instance use the same master key. The first
// instance records its key id; an instance with another key refuses to start — otherwise it
// would fail every check and seal messages no other instance can open. A key the ring holds as
// an old key means a rotation: the record moves to the new key.
func checkMasterKey(ctx context.Context, st *sqlstore.Store, kr *keys.Keyring) error {
	const k = "master_key_id"
	stored, err := st.PutMetaIfAbsent(ctx, k, kr.CurrentID())
	if err != nil {
		return fmt.Errorf("master key check: %w", err)
	}
	switch {
	case stored == kr.CurrentID():
		return nil
	case kr.Knows(stored):
		return st.SetMeta(ctx, k, kr.CurrentID())
	}
	return fmt.Errorf("this database was set up with master key %s, but this instance has key %s: "+
		"give every instance the same OTPD_MASTER_KEY (for a rotation, put the old key in OTPD_OLD_MASTER_KEYS)",
		stored, kr.CurrentID())
}

// loadKeyring reads the master key from the config, or from the key file, generating the file
// (0600, never overwritten) on first start.
func loadKeyring(c config.Config) (*keys.Keyring, error) {
	var current []byte
	var err error
	if c.MasterKey != "" {
		if current, err = keys.ParseMasterKey(c.MasterKey); err != nil {
			return nil, fmt.Errorf("OTPD_MASTER_KEY: %w", err)
		}
	} else {
		if c.Postgres() && !c.DataDirSet { // Validate says so too; a key in ./otpd-data is easily lost
			return nil, errors.New("with PostgreSQL, set OTPD_MASTER_KEY (the same on every instance)")
		}
		if current, err = readOrCreateKeyFile(c.MasterKeyFile()); err != nil {
			return nil, err
		}
	}
	var old [][]byte
	for _, s := range c.OldMasterKeys {
		if strings.TrimSpace(s) == "" {
			continue
		}
		k, err := keys.ParseMasterKey(s)
		if err != nil {
			return nil, fmt.Errorf("OTPD_OLD_MASTER_KEYS: %w", err)
		}
		old = append(old, k)
	}
	return keys.NewKeyring(current, old...)
}

func readOrCreateKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := keys.ParseMasterKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("master key file %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	k, err := keys.GenerateMasterKey()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) { // another process won the race: use its key
		return readOrCreateKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	if _, err := f.WriteString(keys.EncodeMasterKey(k) + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return k, f.Close()
}

func workerOwner() string {
	h, _ := os.Hostname()
	tok, _ := keys.RandomToken(6)
	return fmt.Sprintf("%s:%d:%s", h, os.Getpid(), tok)
}

// Backup writes a consistent copy of the SQLite database to path, while servers may go on
// writing (sqlstore.Store.Backup). It neither migrates nor creates anything: a database that is
// not there is an error. On PostgreSQL it returns sqlstore.ErrBackupUnsupported.
func Backup(ctx context.Context, c config.Config, path string) error {
	if c.Postgres() {
		return sqlstore.ErrBackupUnsupported
	}
	if _, err := os.Stat(c.DSN()); err != nil {
		return fmt.Errorf("no database to back up: %w", err)
	}
	st, err := sqlstore.Open(ctx, c.DSN())
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer st.Close()
	return st.Backup(ctx, path)
}

// MigrationStatus prints every migration and whether it is applied, without changing anything.
func MigrationStatus(ctx context.Context, c config.Config, w io.Writer) error {
	st, err := sqlstore.Open(ctx, c.DSN())
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer st.Close()
	ms, err := st.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		fmt.Fprintln(w, m.String())
	}
	return nil
}
