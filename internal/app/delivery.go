package app

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/config"
	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/deliver/email"
	"github.com/otpd/otpd/internal/deliver/logsender"
	_ "github.com/otpd/otpd/internal/deliver/smpp" // provider types: registered by importing them
	_ "github.com/otpd/otpd/internal/deliver/smshttp"
	_ "github.com/otpd/otpd/internal/deliver/twilio"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store/sqlstore"
)

// delivery wires the providers: the built-in ones (SMTP for email, the log provider for every
// channel nothing else serves), the configuration file's, and the tenants' own through the
// engine; the outbox worker routes by them. It is built before the engine and finished after.
type delivery struct {
	builtin  deliver.Registry
	specs    []engine.ProviderSpec
	channels []string
	router   *deliver.CachedRouter
	cfg      config.Delivery
}

// openDelivery builds the providers of c and says which channels the deployment offers.
func openDelivery(c config.Config, st *sqlstore.Store, kr *keys.Keyring, log *slog.Logger) (*delivery, error) {
	d := &delivery{builtin: deliver.Registry{}, cfg: c.Delivery}
	if c.SMTP.URL != "" {
		s, err := email.New(email.Config{URL: c.SMTP.URL, From: c.SMTP.From})
		if err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
		d.builtin[engine.ChannelEmail] = s
	}
	for _, p := range c.Delivery.Providers {
		settings, err := json.Marshal(p.Settings)
		if err != nil {
			return nil, fmt.Errorf("provider %s: settings: %w", p.ID, err)
		}
		if p.Settings == nil {
			settings = []byte("{}")
		}
		d.specs = append(d.specs, engine.ProviderSpec{ID: p.ID, Name: p.Name, Type: p.Type,
			Channels: slices.Clone(p.Channels), Role: p.Role, Settings: settings, Secrets: p.Secrets,
			Enabled: p.Enabled == nil || *p.Enabled, Source: engine.SourceConfig})
	}
	if err := engine.CheckDeploymentProviders(d.specs); err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	offered := map[string]bool{}
	for ch := range d.builtin {
		offered[ch] = true
	}
	for _, s := range d.specs {
		if s.Enabled {
			for _, ch := range s.Channels {
				offered[ch] = true
			}
		}
	}
	for _, ch := range c.Delivery.Worker.Channels {
		offered[ch] = true
	}
	if c.LogProviderOn() {
		ls := logsender.New(st, kr, log)
		for _, ch := range []string{engine.ChannelEmail, engine.ChannelSMS, engine.ChannelViber, engine.ChannelVoice, engine.ChannelWhatsApp} {
			if d.builtin[ch] == nil {
				d.builtin[ch] = ls // channels without a real provider go to the dev inbox
			}
			offered[ch] = true
		}
	}
	for ch := range offered {
		d.channels = append(d.channels, ch)
	}
	slices.Sort(d.channels)
	d.router = &deliver.CachedRouter{Builtin: d.builtin, TTL: c.Delivery.Worker.RouteRefresh}
	return d, nil
}

// engineOptions tell the engine about the deployment's providers.
func (d *delivery) engineOptions() engine.DeliveryOptions {
	return engine.DeliveryOptions{Providers: d.specs, PublicURL: d.cfg.Worker.PublicURL, Changed: d.router.Invalidate,
		AllowPrivateDestinations: d.cfg.Worker.AllowPrivateDestinations}
}

// newWorker builds the outbox worker over the router.
func (d *delivery) newWorker(st *sqlstore.Store, kr *keys.Keyring, clk clock.Clock, log *slog.Logger, reg prometheus.Registerer) *deliver.Worker {
	return &deliver.Worker{Outbox: st, Keys: kr, Router: d.router, Clock: clk, Owner: workerOwner(), Logger: log,
		Metrics: deliver.NewMetrics(reg), Lease: d.cfg.Worker.Lease, SendTimeout: d.cfg.Worker.SendTimeout,
		Batch: d.cfg.Worker.MaxInFlight}
}

// wire connects the engine: tenants' routes, fallbacks and early receipts.
func (d *delivery) wire(e *engine.Engine, w *deliver.Worker) {
	d.router.Source = e.RouteSource()
	w.Fallback = e.FinishWithFallback
	w.AfterSent = e.AfterSent
}

// close drops provider connections (SMPP binds).
func (d *delivery) close() {
	if d != nil {
		_ = d.router.Close()
	}
}
