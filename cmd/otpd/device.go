package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strconv"

	"github.com/google/uuid"

	"github.com/otpd/otpd/internal/otpauth"
)

// cmdDevice manages users' OTP devices: "otpd device enroll --user alice --type totp" prints
// the otpauth:// URI and its QR code in the terminal.
func cmdDevice(ctx context.Context, e *env, args []string) error {
	verbs := []verb{
		{"enroll", "--user U --type T", "enrol a device; a TOTP/HOTP enrolment shows its QR code once", nil},
		{"list", "--user U", "list a user's devices", func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
			user := fs.String("user", "", "the user's `login` or id")
			return func(pos []string) (string, string, any, error) {
				return "GET", devicesPath(*user), nil, needUser(*user, pos, 0, "no arguments")
			}
		}},
		{"get", "--user U ID", "show a device", deviceVerb("GET", "", 1, nil)},
		{"verify", "--user U ID CODE", "check a code against a device", deviceVerb("POST", "/verify", 2,
			func(pos []string) any { return map[string]string{"code": pos[1]} })},
		{"challenge", "--user U ID", "send an SMS/EMAIL device its code", deviceVerb("POST", "/challenge", 1, emptyBody)},
		{"resync", "--user U ID CODE1 CODE2", "resynchronise an HOTP device from two consecutive codes", deviceVerb("POST", "/resync", 3,
			func(pos []string) any { return map[string]string{"code1": pos[1], "code2": pos[2]} })},
		{"unlock", "--user U ID", "unlock a device and reset its failure count (admin)", deviceVerb("POST", "/unlock", 1, emptyBody)},
		{"disable", "--user U ID", "disable a device (its pending code dies at once)", deviceVerb("PATCH", "", 1,
			func([]string) any { return map[string]string{"status": "disabled"} })},
		{"delete", "--user U ID", "delete a device", deviceVerb("DELETE", "", 1, nil)},
	}
	if len(args) > 0 && args[0] == "enroll" {
		return deviceEnroll(ctx, e, args[1:])
	}
	return runVerbs(ctx, e, "device", verbs, args)
}

// emptyBody is the {} a body-less POST sends (the in-process transport has no request body
// otherwise).
func emptyBody([]string) any { return map[string]any{} }

// devicesPath is the user's devices collection; a user given by login is addressed as
// "login:<login>".
func devicesPath(user string) string {
	ref := "login:" + user
	if _, err := uuid.Parse(user); err == nil {
		ref = user
	}
	return "/v1/users/" + url.PathEscape(ref) + "/devices"
}

func needUser(user string, pos []string, n int, what string) error {
	if user == "" {
		return fmt.Errorf("%w: --user is required", errUsage)
	}
	return need(pos, n, what)
}

// deviceVerb builds "<method> …/devices/ID<suffix>" from --user and n positional arguments.
func deviceVerb(method, suffix string, n int, body func(pos []string) any) func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
	return func(fs *flag.FlagSet) func([]string) (string, string, any, error) {
		user := fs.String("user", "", "the user's `login` or id")
		return func(pos []string) (string, string, any, error) {
			if err := needUser(*user, pos, n, strconv.Itoa(n)+" argument(s): ID"+map[int]string{2: " CODE", 3: " CODE1 CODE2"}[n]); err != nil {
				return "", "", nil, err
			}
			var b any
			if body != nil {
				b = body(pos)
			}
			return method, devicesPath(*user) + "/" + url.PathEscape(pos[0]) + suffix, b, nil
		}
	}
}

func deviceEnroll(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("otpd device enroll", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	user := fs.String("user", "", "the user's `login` or id")
	typ := fs.String("type", "totp", "`type`: totp, hotp, sms, email, pin")
	name := fs.String("name", "", "device `name` (default: as Soffid names them)")
	alg := fs.String("algorithm", "", "TOTP/HOTP `algorithm`: SHA1, SHA256, SHA512 (default: policy)")
	digits := fs.Int("digits", 0, "TOTP/HOTP code `digits` (6–8; default: policy)")
	period := fs.Int("period", 0, "TOTP step in `seconds` (30 or 60; default: policy)")
	secret := fs.String("secret", "", "import this base32 `seed` instead of generating one (visible in ps and shell history: prefer --secret-file)")
	secretFile := fs.String("secret-file", "", "import the base32 seed read from `FILE` (- for standard input)")
	phone := fs.String("phone", "", "SMS: the `number`")
	email := fs.String("email", "", "EMAIL: the `address`")
	pin := fs.String("pin", "", "PIN: the `pin` (visible in ps and shell history: prefer --pin-file)")
	pinFile := fs.String("pin-file", "", "PIN: read the pin from `FILE` (- for standard input)")
	invert := fs.Bool("invert", false, "draw the QR code's dark modules (for dark text on a light terminal)")
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: otpd device enroll --user U --type T [flags]\n\nEnrol a device. A TOTP or HOTP enrolment prints the otpauth:// URI and its QR code\nonce: scan it with an authenticator app.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	connect := clientFlags(e, fs)
	if err := fs.Parse(interleave(fs, args)); err != nil {
		return err
	}
	if err := needUser(*user, fs.Args(), 0, "flags only"); err != nil {
		return err
	}
	if *secretFile == "-" && *pinFile == "-" {
		return fmt.Errorf("%w: only one of --secret-file and --pin-file can read standard input", errUsage)
	}
	for _, s := range []struct {
		flag, fileFlag string
		value, file    *string
	}{{"secret", "secret-file", secret, secretFile}, {"pin", "pin-file", pin, pinFile}} {
		switch {
		case *s.value != "" && *s.file != "":
			return fmt.Errorf("%w: give --%s or --%s, not both", errUsage, s.flag, s.fileFlag)
		case *s.value != "":
			warnSecretFlag(e, s.flag, s.fileFlag)
		case *s.file != "":
			v, err := readSecretFile(e, s.flag, *s.file)
			if err != nil {
				return err
			}
			if v == "" {
				return fmt.Errorf("%s: %s is empty", s.flag, *s.file)
			}
			*s.value = v
		}
	}
	body := map[string]any{"type": *typ}
	for k, v := range map[string]string{"name": *name, "algorithm": *alg, "secret": *secret, "phone": *phone, "email": *email, "pin": *pin} {
		if v != "" {
			body[k] = v
		}
	}
	if *digits != 0 {
		body["digits"] = *digits
	}
	if *period != 0 {
		body["period_seconds"] = *period
	}
	t, err := connect(ctx)
	if err != nil {
		return err
	}
	defer t.close()
	raw, err := t.cli.Do(ctx, "POST", devicesPath(*user), body, nil)
	if err != nil {
		return err
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		return printJSON(e.stdout, raw)
	}
	uri, _ := d["uri"].(string)
	delete(d, "uri")
	delete(d, "qr_png")
	shown, _ := json.Marshal(d)
	if err := printJSON(e.stdout, shown); err != nil {
		return err
	}
	if uri == "" {
		return nil
	}
	qr, err := otpauth.Terminal(uri, *invert)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nScan this QR code with an authenticator app. It holds the secret and is shown only now.\n\n%s\n%s\n", qr, uri)
	return nil
}
