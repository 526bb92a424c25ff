package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"time"

	"github.com/otpd/otpd/internal/app"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
)

// inProcess is an otpd started by the benchmark on SQLite in a temporary directory.
type inProcess struct {
	addr   string
	apiKey string
	dir    string
	stop   func() error
}

// benchConfig is the default configuration with the benchmark's adjustments: a fresh data
// directory, warn-level logs and send limits that cannot throttle the load.
//
// The recipient limit stays at its default: every start uses a new recipient, so it never
// refuses, and taking its slot is part of what a real start costs. The IP limit applies only
// when a request names client_ip, which the benchmark never does. The application and tenant
// limits are set explicitly to 0 (off, their default), with a window so the Limits struct is
// not mistaken for "unset" and replaced by the defaults.
func benchConfig(dir, apiKey string) config.Config {
	c := config.Default()
	c.DataDir = dir
	c.LogLevel = "warn"
	c.BootstrapAPIKey = apiKey
	d := engine.DefaultConfig().Limits
	c.Policy.Limits = engine.Limits{
		Recipient:   d.Recipient,
		IP:          d.IP,
		Application: engine.Limit{Count: 0, Window: time.Minute},
		Tenant:      engine.Limit{Count: 0, Window: time.Hour},
	}
	return c
}

// startInProcess opens otpd on SQLite in a new temporary directory and serves it on a loopback
// listener. Its goroutines carry the pprof label side=server.
func startInProcess(ctx context.Context, logw io.Writer) (*inProcess, error) {
	dir, err := os.MkdirTemp("", "otpd-bench-")
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
		a, err = app.Open(sctx, c, app.NewLogger(c, logw), app.Options{})
		if err != nil {
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
	return &inProcess{addr: c.Addr, apiKey: apiKey, dir: dir, stop: func() error {
		cancel()
		err := <-done
		err = errors.Join(err, a.Close())
		return errors.Join(err, os.RemoveAll(dir))
	}}, nil
}

// baselineRequest and baselineAnswer are the baseline's wire forms, shaped like a code check.
type baselineRequest struct {
	Code string `json:"code"`
}

type baselineAnswer struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	Valid        bool   `json:"valid"`
	AttemptsLeft int    `json:"attempts_left"`
}

// baselineHandler is the minimal Go net/http JSON handler SPEC.md §5 measures otpd against:
// it decodes a small JSON body and answers a small JSON object of the size of a check answer.
func baselineHandler(w http.ResponseWriter, r *http.Request) {
	var req baselineRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Code == "" {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(baselineAnswer{ID: "019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b",
		Status: "verified", Valid: true, AttemptsLeft: 0})
}

// startBaseline serves baselineHandler on its own loopback listener, with the same server
// timeouts as otpd. Its goroutines carry the pprof label side=baseline-server.
func startBaseline(ctx context.Context) (addr string, stop func() error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/verifications/{id}/check", baselineHandler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
	done := make(chan error, 1)
	pprof.Do(ctx, pprof.Labels("side", "baseline-server"), func(context.Context) {
		go func() { done <- srv.Serve(ln) }()
	})
	return ln.Addr().String(), func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		return err
	}, nil
}
