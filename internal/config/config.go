// Package config builds otpd's effective configuration from, in rising precedence: built-in
// defaults, an optional YAML file (strict: unknown keys are errors), OTPD_* environment variables,
// and command-line flags. Validate reports every problem at once.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
)

// Config is everything `otpd serve` needs.
type Config struct {
	Addr    string `yaml:"addr"`
	DataDir string `yaml:"data_dir"`
	// DataDirSet says the data directory was chosen (flag, OTPD_DATA_DIR or the file) rather
	// than left at the default ./otpd-data of whatever the working directory is.
	DataDirSet  bool   `yaml:"-"`
	DatabaseURL string `yaml:"database_url"`
	// MasterKey (hex or base64, 32 bytes) overrides the key file <data_dir>/master.key.
	MasterKey string `yaml:"master_key"`
	// OldMasterKeys still open data sealed before a key rotation.
	OldMasterKeys []string `yaml:"old_master_keys"`
	// BootstrapAPIKey becomes the default tenant's admin key on first start with an empty database.
	BootstrapAPIKey string `yaml:"bootstrap_api_key"`
	SMTP            SMTP   `yaml:"smtp"`
	// LogProvider: "auto" (on when no real provider is configured), "on" or "off". The log
	// provider delivers into the development inbox instead of the outside world.
	LogProvider string `yaml:"log_provider"`
	LogLevel    string `yaml:"log_level"`
	LogFormat   string `yaml:"log_format"`
	// TrustedProxies are the CIDRs whose X-Forwarded-For is believed.
	TrustedProxies  []string      `yaml:"trusted_proxies"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	JanitorInterval time.Duration `yaml:"janitor_interval"`
	Policy          engine.Config `yaml:"policy"`
	// Delivery holds the top-level `providers:` list and the `delivery:` block (providers.go).
	Delivery Delivery `yaml:",inline"`
}

// SMTP configures email delivery.
type SMTP struct {
	URL  string `yaml:"url"`  // smtp://user:pass@host:port, smtps://… for implicit TLS
	From string `yaml:"from"` // envelope and header sender
}

// Default returns the built-in defaults: the embedded SQLite database in ./otpd-data.
func Default() Config {
	return Config{
		Addr:            "127.0.0.1:8080",
		DataDir:         "otpd-data",
		LogProvider:     "auto",
		LogLevel:        "info",
		LogFormat:       "json",
		ShutdownTimeout: 20 * time.Second,
		JanitorInterval: time.Minute,
		Policy:          engine.DefaultConfig(),
	}
}

// Load builds the configuration from args (without the subcommand name) and env
// ("KEY=value" pairs, as os.Environ). It returns the remaining positional arguments.
func Load(fs *flag.FlagSet, args []string, env []string) (Config, []string, error) {
	c := Default()
	envs := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "OTPD_") {
			envs[k] = v
		}
	}
	var (
		file                                                     = fs.String("config", envs["OTPD_CONFIG"], "YAML configuration `file` (env OTPD_CONFIG)")
		addr, dataDir, dbURL, smtpURL, smtpFrom, logProv, logLvl stringFlag
	)
	fs.Var(&addr, "addr", "listen `address` (env OTPD_ADDR, default 127.0.0.1:8080)")
	fs.Var(&dataDir, "data-dir", "`directory` for the SQLite database and master key (env OTPD_DATA_DIR, default ./otpd-data)")
	fs.Var(&dbURL, "database-url", "`postgres://…` to use PostgreSQL instead of SQLite (env OTPD_DATABASE_URL)")
	fs.Var(&smtpURL, "smtp-url", "`smtp://user:pass@host:port` (smtps:// for implicit TLS) for email delivery (env OTPD_SMTP_URL)")
	fs.Var(&smtpFrom, "smtp-from", "sender `address` of emails (env OTPD_SMTP_FROM)")
	fs.Var(&logProv, "log-provider", "development inbox provider: `auto`, on or off (env OTPD_LOG_PROVIDER)")
	fs.Var(&logLvl, "log-level", "`level`: debug, info, warn, error (env OTPD_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	if *file != "" {
		// An empty data_dir before the file is read tells whether the file names one.
		c.DataDir = ""
		if err := c.loadFile(*file); err != nil {
			return c, nil, err
		}
		if c.DataDir == "" {
			c.DataDir = Default().DataDir
		} else {
			c.DataDirSet = true
		}
	}
	set := func(dst *string, key string, f stringFlag) {
		if v, ok := envs[key]; ok && v != "" {
			*dst = v
		}
		if f.set {
			*dst = f.v
		}
	}
	set(&c.Addr, "OTPD_ADDR", addr)
	set(&c.DataDir, "OTPD_DATA_DIR", dataDir)
	if dataDir.set || envs["OTPD_DATA_DIR"] != "" {
		c.DataDirSet = true
	}
	set(&c.DatabaseURL, "OTPD_DATABASE_URL", dbURL)
	set(&c.SMTP.URL, "OTPD_SMTP_URL", smtpURL)
	set(&c.SMTP.From, "OTPD_SMTP_FROM", smtpFrom)
	set(&c.LogProvider, "OTPD_LOG_PROVIDER", logProv)
	set(&c.LogLevel, "OTPD_LOG_LEVEL", logLvl)
	set(&c.LogFormat, "OTPD_LOG_FORMAT", stringFlag{})
	set(&c.MasterKey, "OTPD_MASTER_KEY", stringFlag{})
	set(&c.BootstrapAPIKey, "OTPD_BOOTSTRAP_API_KEY", stringFlag{})
	if v := envs["OTPD_OLD_MASTER_KEYS"]; v != "" {
		c.OldMasterKeys = strings.Split(v, ",")
	}
	if v := envs["OTPD_TRUSTED_PROXIES"]; v != "" {
		c.TrustedProxies = strings.Split(v, ",")
	}
	return c, fs.Args(), nil
}

func (c *Config) loadFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// stringFlag remembers whether it was set, so an explicit flag beats the environment.
type stringFlag struct {
	v   string
	set bool
}

func (f *stringFlag) String() string     { return f.v }
func (f *stringFlag) Set(s string) error { f.v, f.set = s, true; return nil }

// Postgres reports whether the database is PostgreSQL.
func (c Config) Postgres() bool {
	return strings.HasPrefix(c.DatabaseURL, "postgres://") || strings.HasPrefix(c.DatabaseURL, "postgresql://")
}

// DSN is what the store opens: the PostgreSQL URL or the SQLite file in the data directory.
func (c Config) DSN() string {
	if c.DatabaseURL != "" {
		return c.DatabaseURL
	}
	return filepath.Join(c.DataDir, "otpd.db")
}

// MasterKeyFile is where the generated master key lives when OTPD_MASTER_KEY is not set.
func (c Config) MasterKeyFile() string { return filepath.Join(c.DataDir, "master.key") }

// LogProviderOn resolves "auto".
func (c Config) LogProviderOn() bool {
	switch c.LogProvider {
	case "on":
		return true
	case "off":
		return false
	}
	return c.SMTP.URL == "" && len(c.Delivery.Providers) == 0
}

// Validate reports all configuration errors together.
func (c Config) Validate() error {
	var errs []error
	if _, err := netip.ParseAddrPort(c.Addr); err != nil {
		if h, p, ok := strings.Cut(c.Addr, ":"); !ok || p == "" || strings.Contains(h, " ") {
			errs = append(errs, fmt.Errorf("addr %q: want host:port", c.Addr))
		}
	}
	if c.DatabaseURL != "" && !c.Postgres() {
		errs = append(errs, errors.New("database_url must start with postgres:// or postgresql:// (leave it empty for SQLite)"))
	}
	if c.DatabaseURL == "" && c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required for SQLite"))
	}
	if c.Postgres() && c.MasterKey == "" && !c.DataDirSet {
		// Without either, the key would be generated in ./otpd-data of the working directory,
		// which a container loses on restart — and with it every sealed secret.
		errs = append(errs, errors.New("with PostgreSQL, set OTPD_MASTER_KEY (`otpd keygen` prints one; "+
			"give every instance the same), or name the data directory that keeps master.key "+
			"(--data-dir or OTPD_DATA_DIR, on persistent storage)"))
	}
	errs = append(errs, c.validateMasterKeys()...)
	if c.SMTP.URL != "" {
		u, err := url.Parse(c.SMTP.URL)
		if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
			errs = append(errs, errors.New("smtp.url must look like smtp://user:pass@host:port or smtps://…"))
		}
		if c.SMTP.From == "" {
			errs = append(errs, errors.New("smtp.from is required when smtp.url is set"))
		}
	}
	switch c.LogProvider {
	case "auto", "on", "off":
	default:
		errs = append(errs, errors.New("log_provider must be auto, on or off"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, errors.New("log_level must be debug, info, warn or error"))
	}
	switch c.LogFormat {
	case "json", "text":
	default:
		errs = append(errs, errors.New("log_format must be json or text"))
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(strings.TrimSpace(p)); err != nil {
			errs = append(errs, fmt.Errorf("trusted_proxies: %q is not a CIDR prefix", p))
		}
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown_timeout must be positive"))
	}
	if c.JanitorInterval < time.Second {
		errs = append(errs, errors.New("janitor_interval must be at least 1s"))
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Delivery.validate()...)
	return errors.Join(errs...)
}

// validateMasterKeys checks the keys' format (not whether they fit the database: the app does
// that once it is open). The errors never echo a key.
func (c Config) validateMasterKeys() []error {
	var errs []error
	seen := map[string]string{}
	if c.MasterKey != "" {
		if k, err := keys.ParseMasterKey(c.MasterKey); err != nil {
			errs = append(errs, fmt.Errorf("master_key (OTPD_MASTER_KEY): %w", err))
		} else {
			seen[string(k)] = "master_key"
		}
	}
	for i, s := range c.OldMasterKeys {
		if strings.TrimSpace(s) == "" {
			continue
		}
		k, err := keys.ParseMasterKey(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("old_master_keys (OTPD_OLD_MASTER_KEYS) entry %d: %w", i+1, err))
			continue
		}
		if prev, dup := seen[string(k)]; dup {
			errs = append(errs, fmt.Errorf("old_master_keys (OTPD_OLD_MASTER_KEYS) entry %d is the same key as %s", i+1, prev))
			continue
		}
		seen[string(k)] = fmt.Sprintf("old_master_keys entry %d", i+1)
	}
	return errs
}

// Masked returns a copy safe to print: secrets replaced, URL passwords hidden.
func (c Config) Masked() Config {
	mask := func(s string) string {
		if s == "" {
			return ""
		}
		return "********"
	}
	c.MasterKey = mask(c.MasterKey)
	c.BootstrapAPIKey = mask(c.BootstrapAPIKey)
	old := make([]string, len(c.OldMasterKeys))
	for i := range old {
		old[i] = "********"
	}
	c.OldMasterKeys = old
	c.DatabaseURL = maskURL(c.DatabaseURL)
	c.SMTP.URL = maskURL(c.SMTP.URL)
	c.Delivery = c.Delivery.masked()
	return c
}

// maskURL hides a URL's password, in its userinfo and in password-like query parameters
// (postgres://db/otpd?user=otpd&password=…), whether or not the URL has userinfo. A URL that
// does not parse is shown as its scheme only: what fails to parse cannot be masked reliably.
func maskURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		if scheme, _, ok := strings.Cut(s, ":"); ok && schemeRE.MatchString(scheme) {
			return scheme + "://" + masked
		}
		return masked
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			// A malformed query may still hold a password that the driver would read.
			u.RawQuery = masked
			return u.String()
		}
		for k := range q {
			if secretish.MatchString(k) {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// masked replaces a secret when a configuration is printed.
const masked = "********"

var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// YAML renders c (call Masked first when printing).
func (c Config) YAML() ([]byte, error) {
	return yaml.Marshal(c)
}
