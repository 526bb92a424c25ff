package config

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, args []string, env []string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, _, err := Load(fs, args, env)
	return c, err
}

func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "otpd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "otpd-data" || c.Postgres() || !c.LogProviderOn() {
		t.Fatalf("defaults: %+v", c)
	}
	if c.DSN() != filepath.Join("otpd-data", "otpd.db") || c.MasterKeyFile() != filepath.Join("otpd-data", "master.key") {
		t.Fatalf("paths: %s %s", c.DSN(), c.MasterKeyFile())
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

// TestPrecedence: flags beat the environment, which beats the file, which beats the defaults.
func TestPrecedence(t *testing.T) {
	file := writeYAML(t, "addr: 127.0.0.1:1111\ndata_dir: /from/file\nlog_level: debug\npolicy:\n  ttl: 2m\n  limits:\n    recipient: {count: 3, window: 15m}\n")
	c, err := load(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:1111" || c.DataDir != "/from/file" || c.LogLevel != "debug" ||
		c.Policy.TTL != 2*time.Minute || c.Policy.Limits.Recipient.Count != 3 || c.Policy.Limits.Recipient.Window != 15*time.Minute {
		t.Fatalf("file: %+v", c)
	}
	if c.Policy.MaxAttempts != 5 || c.Policy.Limits.IP.Count != 25 {
		t.Fatalf("the file reset defaults it did not mention: %+v", c.Policy)
	}
	env := []string{"OTPD_ADDR=127.0.0.1:2222", "OTPD_DATA_DIR=/from/env", "OTPD_CONFIG=" + file, "PATH=/bin"}
	c, err = load(t, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:2222" || c.DataDir != "/from/env" || c.LogLevel != "debug" {
		t.Fatalf("env over file: %+v", c)
	}
	c, err = load(t, []string{"--addr", "127.0.0.1:3333"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:3333" || c.DataDir != "/from/env" {
		t.Fatalf("flag over env: %+v", c)
	}
}

func TestStrictYAML(t *testing.T) {
	file := writeYAML(t, "adress: 127.0.0.1:1\n")
	if _, err := load(t, []string{"--config", file}, nil); err == nil || !strings.Contains(err.Error(), "adress") {
		t.Fatalf("a misspelt key was accepted: %v", err)
	}
	if _, err := load(t, []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, nil); err == nil {
		t.Fatal("a missing config file was accepted")
	}
}

func TestValidateReportsEverything(t *testing.T) {
	c := Default()
	c.Addr = "nonsense"
	c.DatabaseURL = "mysql://x"
	c.SMTP.URL = "http://mail"
	c.LogProvider = "maybe"
	c.LogLevel = "loud"
	c.TrustedProxies = []string{"10.0.0.0/33"}
	c.Policy.CodeLength = 4
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"addr", "database_url", "smtp.url", "smtp.from", "log_provider", "log_level", "trusted_proxies", "code_length"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not mention %s:\n%v", want, err)
		}
	}
}

func TestLogProviderAuto(t *testing.T) {
	c := Default()
	c.SMTP = SMTP{URL: "smtp://mail.example.com:587", From: "a@example.com"}
	if c.LogProviderOn() {
		t.Error("auto stays on with SMTP configured")
	}
	c.LogProvider = "on"
	if !c.LogProviderOn() {
		t.Error("on is off")
	}
}

func TestMaskedHidesSecrets(t *testing.T) {
	c := Default()
	c.MasterKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	c.OldMasterKeys = []string{"ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"}
	c.BootstrapAPIKey = "bootstrap-secret-0123456789abcdef0123"
	c.DatabaseURL = "postgres://otpd:pgsecret@db:5432/otpd?sslmode=require&password=qsecret"
	c.SMTP = SMTP{URL: "smtp://mailer:smtpsecret@mail:587", From: "a@example.com"}
	b, err := c.Masked().YAML()
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, secret := range []string{c.MasterKey, c.OldMasterKeys[0], c.BootstrapAPIKey, "pgsecret", "qsecret", "smtpsecret"} {
		if strings.Contains(out, secret) {
			t.Errorf("masked config shows %q:\n%s", secret, out)
		}
	}
	for _, kept := range []string{"db:5432", "mailer", "mail:587", "ttl: 5m0s"} {
		if !strings.Contains(out, kept) {
			t.Errorf("masked config lost %q:\n%s", kept, out)
		}
	}
	if c.MasterKey == "********" {
		t.Error("Masked changed the original")
	}
}

// TestMaskURL: a database or SMTP password is hidden wherever the URL carries it — in the
// userinfo, in a query parameter with or without userinfo — and a URL that does not parse is
// shown as its scheme only.
func TestMaskURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"postgres://db/otpd?user=otpd&password=hunter2", "postgres://db/otpd?password=xxxxx&user=otpd"},
		{"postgres://otpd@db/otpd?sslpassword=hunter2&sslmode=require", "postgres://otpd@db/otpd?sslmode=require&sslpassword=xxxxx"},
		{"postgres://otpd:hunter2@db:5432/otpd", "postgres://otpd:xxxxx@db:5432/otpd"},
		{"postgres://otpd:p%zzword@db/otpd", "postgres://********"},
		{"postgres://db/otpd?password=hunter2%zz", "postgres://db/otpd?********"},
		{"postgres:otpd:hunter2@db", "postgres://********"},
		{"smtp://mail.example.com:587", "smtp://mail.example.com:587"},
	} {
		got := maskURL(tc.in)
		if got != tc.want {
			t.Errorf("maskURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "hunter2") || strings.Contains(got, "zzword") {
			t.Errorf("maskURL(%q) shows the password: %q", tc.in, got)
		}
	}
}

// TestPostgresNeedsMasterKey: with PostgreSQL, a master key generated in the default
// ./otpd-data of the working directory would be lost with a container, and every sealed secret
// with it. Validate asks for OTPD_MASTER_KEY or a data directory the operator chose.
func TestPostgresNeedsMasterKey(t *testing.T) {
	pg := "OTPD_DATABASE_URL=postgres://otpd@db/otpd"
	file := writeYAML(t, "data_dir: /var/lib/otpd\n")
	emptyFile := writeYAML(t, "log_level: info\n")
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		ok   bool
	}{
		{"nothing", nil, []string{pg}, false},
		{"a file without data_dir", []string{"--config", emptyFile}, []string{pg}, false},
		{"master key", nil, []string{pg, "OTPD_MASTER_KEY=" + strings.Repeat("ab", 32)}, true},
		{"env data dir", nil, []string{pg, "OTPD_DATA_DIR=/var/lib/otpd"}, true},
		{"flag data dir", []string{"--data-dir", "/var/lib/otpd"}, []string{pg}, true},
		{"file data dir", []string{"--config", file}, []string{pg}, true},
		{"sqlite on the defaults", nil, nil, true},
	} {
		c, err := load(t, tc.args, tc.env)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		err = c.Validate()
		if tc.ok && err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "OTPD_MASTER_KEY") || !strings.Contains(err.Error(), "OTPD_DATA_DIR")) {
			t.Errorf("%s: want an error that names OTPD_MASTER_KEY and OTPD_DATA_DIR, got %v", tc.name, err)
		}
	}
}

// TestValidateMasterKeys: a malformed master key, current or old, is reported by Validate with
// every other problem (serve lists them all at once), without echoing the key.
func TestValidateMasterKeys(t *testing.T) {
	good, other := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	secretTypo := strings.Repeat("ab", 31) + "zz"
	c := Default()
	c.MasterKey = secretTypo
	c.OldMasterKeys = []string{other, "short-old-key", " ", other}
	c.LogLevel = "loud"
	err := c.Validate()
	if err == nil {
		t.Fatal("malformed master keys accepted")
	}
	for _, want := range []string{"OTPD_MASTER_KEY", "OTPD_OLD_MASTER_KEYS) entry 2", "entry 4 is the same key as old_master_keys entry 1", "log_level"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not mention %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), secretTypo) || strings.Contains(err.Error(), "short-old-key") {
		t.Errorf("the error echoes a key: %v", err)
	}
	c = Default()
	c.MasterKey, c.OldMasterKeys = good, []string{other, ""}
	if err := c.Validate(); err != nil {
		t.Errorf("valid keys refused: %v", err)
	}
	c.OldMasterKeys = []string{good}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "same key as master_key") {
		t.Errorf("the current key listed as an old one: %v", err)
	}
}
