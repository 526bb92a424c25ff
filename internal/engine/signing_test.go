package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store/storetest"
)

func claimsAt(now time.Time, ttl time.Duration) jwt.RegisteredClaims {
	return jwt.RegisteredClaims{Subject: "app-1", IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl))}
}

func TestSignAndParseJWT(t *testing.T) {
	storetest.ForEachBackend(t, func(t *testing.T, b storetest.Backend) {
		f := setup(t, b, engine.Config{})
		ctx := context.Background()
		tok, err := f.eng.SignJWT(ctx, claimsAt(f.clk.Now(), time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		var got jwt.RegisteredClaims
		if err := f.eng.ParseJWT(ctx, tok, &got); err != nil || got.Subject != "app-1" {
			t.Fatalf("parse: %v %+v", err, got)
		}
		// Another instance on the same database verifies it (it loads the key by kid).
		other := newEngine(t, storetest.Open(t, f.dsn), f.clk, engine.Config{})
		if err := other.ParseJWT(ctx, tok, &jwt.RegisteredClaims{}); err != nil {
			t.Fatalf("second instance: %v", err)
		}
		// Tampered payload, wrong algorithm, no expiry, garbage: all refused.
		parts := strings.Split(tok, ".")
		bad := []string{
			parts[0] + "." + parts[1] + "x." + parts[2],
			parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-2] + "AA",
			"garbage",
			"",
		}
		hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claimsAt(f.clk.Now(), time.Hour)).SignedString([]byte("secret"))
		none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claimsAt(f.clk.Now(), time.Hour)).SignedString(jwt.UnsafeAllowNoneSignatureType)
		noExp, _ := f.eng.SignJWT(ctx, jwt.RegisteredClaims{Subject: "x"})
		bad = append(bad, hs, none, noExp)
		for _, b := range bad {
			if err := f.eng.ParseJWT(ctx, b, &jwt.RegisteredClaims{}); !errors.Is(err, engine.ErrInvalidToken) {
				t.Errorf("token %.40q accepted: %v", b, err)
			}
		}
		// Expiry follows the engine's clock.
		f.clk.Advance(time.Hour + time.Second)
		if err := f.eng.ParseJWT(ctx, tok, &jwt.RegisteredClaims{}); !errors.Is(err, engine.ErrInvalidToken) {
			t.Errorf("expired token accepted: %v", err)
		}
	})
}

func TestSigningKeyRotation(t *testing.T) {
	f := setup(t, storetest.Backends()[0], engine.Config{})
	ctx := context.Background()
	old, _ := f.eng.SignJWT(ctx, claimsAt(f.clk.Now(), 60*24*time.Hour))
	f.clk.Advance(engine.SigningKeyLifetime + time.Minute)
	fresh, _ := f.eng.SignJWT(ctx, claimsAt(f.clk.Now(), time.Hour))
	kid := func(tok string) string {
		tk, _, _ := jwt.NewParser().ParseUnverified(tok, &jwt.RegisteredClaims{})
		return tk.Header["kid"].(string)
	}
	if kid(old) == kid(fresh) {
		t.Fatal("no new key after the lifetime")
	}
	if err := f.eng.ParseJWT(ctx, old, &jwt.RegisteredClaims{}); err != nil {
		t.Fatalf("a token of the previous key no longer verifies: %v", err)
	}
	var set struct {
		Keys []struct{ Kid, Kty, Crv, Alg, Use, D string }
	}
	raw, err := f.eng.JWKS(ctx)
	if err != nil || json.Unmarshal(raw, &set) != nil || len(set.Keys) != 2 {
		t.Fatalf("jwks: %v %s", err, raw)
	}
	for _, k := range set.Keys {
		if k.Kty != "EC" || k.Crv != "P-256" || k.Alg != "ES256" || k.Use != "sig" || k.D != "" {
			t.Errorf("jwks key %+v (D must never be published)", k)
		}
	}
	// After the retention the old key is purged and its tokens stop verifying.
	f.clk.Advance(engine.SigningKeyRetention)
	if _, err := f.eng.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	other := newEngine(t, f.st, f.clk, engine.Config{})
	if err := other.ParseJWT(ctx, old, &jwt.RegisteredClaims{}); !errors.Is(err, engine.ErrInvalidToken) {
		t.Errorf("a purged key still verifies: %v", err)
	}
}

func TestAuthenticateClient(t *testing.T) {
	f := setup(t, storetest.Backends()[0], engine.Config{})
	ctx := context.Background()
	app, err := f.eng.CreateApplication(ctx, f.admin, "scim")
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.eng.AuthenticateClient(ctx, app.ClientID, app.ClientSecret)
	if err != nil || p.ApplicationID != app.ID || p.TenantID != f.admin.TenantID || p.IsAdmin() {
		t.Fatalf("client credentials: %+v %v", p, err)
	}
	for _, c := range [][2]string{{app.ClientID, app.ClientSecret + "x"}, {app.ClientID, ""}, {"cl_nope", app.ClientSecret}, {"", ""}} {
		if _, err := f.eng.AuthenticateClient(ctx, c[0], c[1]); !errors.Is(err, engine.ErrUnauthenticated) {
			t.Errorf("%q/%q: %v", c[0], c[1], err)
		}
	}
}
