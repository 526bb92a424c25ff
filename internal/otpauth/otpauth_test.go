package otpauth

import (
	"bytes"
	"image/png"
	"strings"
	"testing"

	potp "github.com/pquerna/otp"
)

// keys used across the tests: every algorithm's seed length, both types, a label that needs
// escaping.
var testKeys = []Key{
	{Type: TOTP, Issuer: "otpd", Account: "alice", Secret: []byte("12345678901234567890"), Algorithm: "SHA1", Digits: 6, Period: 30},
	{Type: TOTP, Issuer: "ACME Co", Account: "bob@example.com", Secret: bytes.Repeat([]byte{0xA5}, 32), Algorithm: "SHA256", Digits: 8, Period: 60},
	{Type: TOTP, Issuer: "otpd", Account: "carol & dave?=%", Secret: bytes.Repeat([]byte("0123456789abcdef"), 4), Algorithm: "SHA512", Digits: 7, Period: 30},
	{Type: HOTP, Issuer: "otpd", Account: "erin", Secret: []byte("12345678901234567890"), Algorithm: "SHA1", Digits: 6, Counter: 42},
}

func TestURIRoundTrip(t *testing.T) {
	for _, k := range testKeys {
		uri := k.URI()
		got, err := Parse(uri)
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		if got.Type != k.Type || got.Issuer != k.Issuer || got.Account != k.Account || !bytes.Equal(got.Secret, k.Secret) ||
			got.Algorithm != k.Algorithm || got.Digits != k.Digits || got.Period != k.Period || got.Counter != k.Counter {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", uri, got, k)
		}
		if strings.Contains(uri, " ") || strings.Contains(uri, "+") {
			t.Errorf("URI has a raw space or a plus: %s", uri)
		}
		// An independent parser (pquerna/otp) reads the same key.
		pk, err := potp.NewKeyFromURL(uri)
		if err != nil {
			t.Fatalf("pquerna cannot parse %s: %v", uri, err)
		}
		if pk.Type() != k.Type || pk.Issuer() != k.Issuer || pk.AccountName() != k.Account || pk.Secret() != EncodeSecret(k.Secret) {
			t.Errorf("pquerna reads %s as type %q issuer %q account %q secret %q", uri, pk.Type(), pk.Issuer(), pk.AccountName(), pk.Secret())
		}
	}
	if want := "otpauth://totp/otpd:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=otpd&algorithm=SHA1&digits=6&period=30"; testKeys[0].URI() != want {
		t.Errorf("URI = %s\nwant  %s", testKeys[0].URI(), want)
	}
}

func TestDecodeSecret(t *testing.T) {
	want := []byte("12345678901234567890")
	for _, s := range []string{"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "gezd gnbv gy3t qojq gezd gnbv gy3t qojq", "GEZDGNBV-GY3TQOJQ-GEZDGNBV-GY3TQOJQ===="} {
		got, err := DecodeSecret(s)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("DecodeSecret(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "GEZDGNB1", "!!!!"} {
		if _, err := DecodeSecret(s); err == nil {
			t.Errorf("DecodeSecret(%q) accepted", s)
		}
	}
	for _, s := range []string{"otpauth://sotp/x?secret=GEZDGNBV", "http://totp/x?secret=GEZDGNBV", "otpauth://totp/x", "otpauth://totp/x?secret=GEZDGNBV&digits=six"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

// The PNG decodes back to the URI with the test's own decoder (decode_test.go), which also
// checks every Reed–Solomon block; the quiet zone is there and light.
func TestPNGDecodesToURI(t *testing.T) {
	versions := map[int]bool{}
	for _, k := range testKeys {
		uri := k.URI()
		for _, scale := range []int{1, 3, DefaultScale} {
			raw, err := PNG(uri, scale)
			if err != nil {
				t.Fatal(err)
			}
			got, g, err := decodePNG(raw)
			if err != nil {
				t.Fatalf("decode the PNG of %s (scale %d): %v", uri, scale, err)
			}
			if got != uri {
				t.Fatalf("the PNG decodes to %q, want %q", got, uri)
			}
			versions[(len(g)-17)/4] = true
			img, _ := png.Decode(bytes.NewReader(raw))
			side := (len(g) + 2*QuietZone) * scale
			if b := img.Bounds(); b.Dx() != side || b.Dy() != side {
				t.Fatalf("image is %v, want %d square", b, side)
			}
			for i := range side {
				for _, p := range [][2]int{{i, 0}, {0, i}, {i, QuietZone*scale - 1}, {QuietZone*scale - 1, i}, {i, side - 1}, {side - 1, i}} {
					if r, _, _, _ := img.At(p[0], p[1]).RGBA(); r < 0x8000 {
						t.Fatalf("quiet zone pixel %v is dark (scale %d)", p, scale)
					}
				}
			}
		}
	}
	if len(versions) < 3 {
		t.Errorf("the keys cover only QR versions %v; the decoder is not exercised on enough sizes", versions)
	}
	// The decoder is not a rubber stamp: a damaged module is noticed.
	raw, _ := PNG(testKeys[0].URI(), 1)
	img, _ := png.Decode(bytes.NewReader(raw))
	g, err := sampleImage(img)
	if err != nil {
		t.Fatal(err)
	}
	g[len(g)-1][len(g)-1] = !g[len(g)-1][len(g)-1] // a data module in the bottom-right corner
	if s, err := decodeGrid(g); err == nil {
		t.Errorf("a damaged code decoded to %q", s)
	}
}

// The terminal rendering carries the same modules: read back as a matrix it decodes to the URI,
// in both colourings.
func TestTerminalDecodesToURI(t *testing.T) {
	for _, k := range testKeys {
		uri := k.URI()
		for _, invert := range []bool{false, true} {
			text, err := Terminal(uri, invert)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
			m, _ := Encode(uri)
			side := m.Size + 2*QuietZone
			if len(lines) != (side+1)/2 {
				t.Fatalf("%d lines, want %d", len(lines), (side+1)/2)
			}
			var rows [][]bool
			for _, l := range lines {
				top, bottom := make([]bool, 0, side), make([]bool, 0, side)
				for _, r := range l {
					ti, bi := r == '█' || r == '▀', r == '█' || r == '▄'
					if !strings.ContainsRune("█▀▄ ", r) {
						t.Fatalf("unexpected character %q", r)
					}
					// ink is a light module unless inverted
					top, bottom = append(top, ti == invert), append(bottom, bi == invert)
				}
				if len(top) != side {
					t.Fatalf("line is %d modules wide, want %d", len(top), side)
				}
				rows = append(rows, top, bottom)
			}
			g := make(grid, m.Size)
			for y := range m.Size {
				g[y] = rows[y+QuietZone][QuietZone : QuietZone+m.Size]
				for _, quiet := range [][]bool{rows[y+QuietZone][:QuietZone], rows[y+QuietZone][QuietZone+m.Size:]} {
					for _, dark := range quiet {
						if dark {
							t.Fatal("quiet zone has a dark module")
						}
					}
				}
			}
			got, err := decodeGrid(g)
			if err != nil || got != uri {
				t.Fatalf("terminal code (invert %v) decodes to %q, %v; want %q", invert, got, err, uri)
			}
		}
	}
}
