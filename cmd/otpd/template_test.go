package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otpd/otpd/internal/keys"
)

// TestTemplateCommand: with moderation on (policy.messaging.moderation in the YAML file), a new
// template waits as "requested" until `otpd template approve` — the operator's moderation —
// and the default template cannot be deleted. Local mode, on an SQLite file.
func TestTemplateCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "otpd.yaml")
	if err := os.WriteFile(cfg, []byte("policy:\n  messaging:\n    moderation: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mk, _ := keys.GenerateMasterKey()
	vars := []string{"OTPD_MASTER_KEY=" + keys.EncodeMasterKey(mk)}
	otpd := func(want int, args ...string) map[string]any {
		t.Helper()
		var out, errb bytes.Buffer
		args = append(args, "--config", cfg, "--data-dir", dir)
		if code := run(context.Background(), args, vars, strings.NewReader(""), &out, &errb); code != want {
			t.Fatalf("otpd %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out.String(), errb.String())
		}
		var v map[string]any
		_ = json.Unmarshal(out.Bytes(), &v)
		return v
	}
	tp := otpd(0, "template", "create", "--name", "login", "--text", "Your login code is {code2fa}", "--countries", "AU, fr")
	if tp["status"] != "requested" || fmt.Sprint(tp["countries"]) != "[AU FR]" {
		t.Fatalf("created: %v", tp)
	}
	id := fmt.Sprint(tp["id"])
	if v := otpd(0, "template", "approve", id); v["status"] != "approved" {
		t.Errorf("approved: %v", v)
	}
	list := otpd(0, "template", "list", "--status", "approved")
	var def string
	for _, it := range list["items"].([]any) {
		if m := it.(map[string]any); m["default"] == true {
			def = fmt.Sprint(m["id"])
		}
	}
	if list["total"] != 2.0 || def == "" {
		t.Fatalf("approved templates: %v", list)
	}
	otpd(1, "template", "delete", def)
	otpd(1, "template", "create", "--name", "bad", "--text", "no placeholder")
	otpd(2, "template", "approve")
	otpd(0, "template", "delete", id)
	if v := otpd(0, "template", "get", id); v["status"] != "deleted" {
		t.Errorf("deleted: %v", v)
	}
	// The operator's moderation is in the audit log, newest first, with the action filter.
	log := otpd(0, "audit", "list", "--action", "template.approve")
	items, _ := log["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["target"] == nil || items[0].(map[string]any)["action"] != "template.approve" {
		t.Fatalf("audit list --action template.approve: %v", log)
	}
	page := otpd(0, "audit", "list", "--limit", "1")
	if items, _ := page["items"].([]any); len(items) != 1 || items[0].(map[string]any)["action"] != "template.delete" || page["next_cursor"] == nil {
		t.Fatalf("audit list --limit 1: %v", page)
	}
	next := otpd(0, "audit", "list", "--limit", "1", "--cursor", page["next_cursor"].(string))
	if items, _ := next["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] == page["items"].([]any)[0].(map[string]any)["id"] {
		t.Fatalf("audit list, next page: %v", next)
	}
	otpd(1, "audit", "list", "--limit", "0")
	otpd(2, "audit", "list", "extra")
}
