package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"math"
	"strings"
	"testing"
)

var (
	hexKey    = strings.Repeat("0123456789abcdef", 4)
	hexKeyRaw = mustHex(hexKey)
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

var parseMasterKeyTests = []struct {
	name string
	in   string
	ok   bool
}{
	{"hex", hexKey, true},
	{"upper hex", strings.ToUpper(hexKey), true},
	{"hex with spaces and newline", "  " + hexKey + "\n", true},
	{"base64 std padded", base64.StdEncoding.EncodeToString(hexKeyRaw), true},
	{"base64 std raw", base64.RawStdEncoding.EncodeToString(hexKeyRaw), true},
	{"base64 url padded", base64.URLEncoding.EncodeToString(hexKeyRaw), true},
	{"base64 url raw", base64.RawURLEncoding.EncodeToString(hexKeyRaw), true},
	{"empty", "", false},
	{"blank", "   ", false},
	{"hex 31 bytes", hexKey[:62], false},
	{"hex 33 bytes", hexKey + "00", false},
	{"hex odd length", hexKey[:63], false},
	{"hex junk", hexKey[:62] + "zz", false},
	{"base64 31 bytes", base64.StdEncoding.EncodeToString(hexKeyRaw[:31]), false},
	{"base64 33 bytes", base64.StdEncoding.EncodeToString(append(bytes.Clone(hexKeyRaw), 1)), false},
	{"base64 line break inside", base64.StdEncoding.EncodeToString(hexKeyRaw)[:20] + "\n" + base64.StdEncoding.EncodeToString(hexKeyRaw)[20:], false},
	{"base64 non-canonical tail", base64.RawStdEncoding.EncodeToString(hexKeyRaw)[:42] + "B", false},
	{"junk", "correct horse battery staple", false},
	{"huge", strings.Repeat("A", 1<<16), false},
}

func TestParseMasterKey(t *testing.T) {
	for _, tt := range parseMasterKeyTests {
		k, err := ParseMasterKey(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
			continue
		}
		if tt.ok && !bytes.Equal(k, hexKeyRaw) {
			t.Errorf("%s: key = %x", tt.name, k)
		}
		if err != nil && len(tt.in) > 8 && strings.Contains(err.Error(), strings.TrimSpace(tt.in)[:8]) {
			t.Errorf("%s: error echoes the input: %v", tt.name, err)
		}
	}
}

func TestMasterKeyRoundTrip(t *testing.T) {
	k, err := GenerateMasterKey()
	if err != nil || len(k) != MasterKeySize {
		t.Fatalf("GenerateMasterKey: %d bytes, %v", len(k), err)
	}
	s := EncodeMasterKey(k)
	if s != strings.ToLower(s) || len(s) != 64 {
		t.Errorf("EncodeMasterKey = %q", s)
	}
	back, err := ParseMasterKey(s)
	if err != nil || !bytes.Equal(back, k) {
		t.Errorf("round trip: %x, %v", back, err)
	}
	if _, err := NewKeyring(k); err != nil {
		t.Error(err)
	}
}

var (
	goodID     = "0123456789abcdef"
	goodSecret = base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)) // contains '-' and '_'
	goodKey    = "otpd_" + goodID + "_" + goodSecret
)

var parseAPIKeyTests = []struct {
	name string
	in   string
	ok   bool
}{
	{"good", goodKey, true},
	{"empty", "", false},
	{"prefix only", "otpd_", false},
	{"wrong prefix", "otpx_" + goodID + "_" + goodSecret, false},
	{"upper prefix", "OTPD_" + goodID + "_" + goodSecret, false},
	{"upper hex id", "otpd_" + strings.ToUpper(goodID) + "_" + goodSecret, false},
	{"id not hex", "otpd_0123456789abcdeg_" + goodSecret, false},
	{"short id", "otpd_" + goodID[:15] + "_" + goodSecret + "A", false},
	{"separator", "otpd_" + goodID + "-" + goodSecret, false},
	{"short secret", goodKey[:len(goodKey)-1], false},
	{"long secret", goodKey + "A", false},
	{"secret not base64url", "otpd_" + goodID + "_" + goodSecret[:42] + "+", false},
	{"secret padded", "otpd_" + goodID + "_" + goodSecret[:41] + "==", false},
	{"secret non-canonical", "otpd_" + goodID + "_" + goodSecret[:42] + "B", false},
	{"space", " " + goodKey[1:], false},
	{"trailing newline", goodKey[:len(goodKey)-1] + "\n", false},
	{"NUL", goodKey[:len(goodKey)-1] + "\x00", false},
	{"Bearer prefix", "Bearer " + goodKey, false},
	{"huge", goodKey + strings.Repeat("A", 1<<20), false},
}

func TestParseAPIKey(t *testing.T) {
	for _, tt := range parseAPIKeyTests {
		id, secret, ok := ParseAPIKey(tt.in)
		if ok != tt.ok {
			t.Errorf("%s: ok = %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if ok && (id != goodID || secret != goodSecret) {
			t.Errorf("%s: id %q secret %q", tt.name, id, secret)
		}
		if !ok && (id != "" || secret != "") {
			t.Errorf("%s: failed parse returned parts", tt.name)
		}
	}
}

func TestNewAPIKey(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id, full, err := NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		pid, secret, ok := ParseAPIKey(full)
		if !ok || pid != id || len(id) != APIKeyIDLen || len(full) != APIKeyLen {
			t.Fatalf("NewAPIKey = %q, %q; parsed %q, %v", id, full, pid, ok)
		}
		if seen[id] || seen[secret] {
			t.Fatal("repeated id or secret")
		}
		seen[id], seen[secret] = true, true
		if !CheckSecret(secret, HashSecret(secret)) {
			t.Fatal("secret does not check against its hash")
		}
	}
}

func FuzzParseAPIKey(f *testing.F) {
	for _, tt := range parseAPIKeyTests[:len(parseAPIKeyTests)-1] {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, secret, ok := ParseAPIKey(s)
		if ok {
			if APIKeyPrefix+id+"_"+secret != s || len(id) != APIKeyIDLen || !ValidSecret(secret) {
				t.Fatalf("accepted %q as id %q secret %q", s, id, secret)
			}
		} else if id != "" || secret != "" {
			t.Fatalf("refused %q but returned parts", s)
		}
		// Whatever the input, a fresh key always parses back.
		nid, full, err := NewAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		if pid, _, ok := ParseAPIKey(full); !ok || pid != nid {
			t.Fatalf("NewAPIKey %q does not parse", full)
		}
	})
}

func TestHashSecret(t *testing.T) {
	h := HashSecret("s3cret")
	if len(h) != 32 {
		t.Fatalf("hash is %d bytes", len(h))
	}
	// SHA-256("abc"), FIPS 180-2 example.
	if got := hex.EncodeToString(HashSecret("abc")); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashSecret(abc) = %s", got)
	}
	if !CheckSecret("s3cret", h) {
		t.Error("right secret refused")
	}
	for _, bad := range [][]byte{nil, h[:31], append(bytes.Clone(h), 0), HashSecret("s3cret ")} {
		if CheckSecret("s3cret", bad) {
			t.Errorf("CheckSecret accepted hash %x", bad)
		}
	}
	if CheckSecret("S3cret", h) {
		t.Error("wrong secret accepted")
	}
}

func TestNewClientCredentials(t *testing.T) {
	id, secret, err := NewClientCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if !ValidClientID(id) || !strings.HasPrefix(id, "cl_") || len(id) != 27 {
		t.Errorf("client id %q", id)
	}
	if !ValidSecret(secret) {
		t.Errorf("client secret %q", secret)
	}
	id2, secret2, _ := NewClientCredentials()
	if id == id2 || secret == secret2 {
		t.Error("repeated credentials")
	}
	for _, bad := range []string{"", "cl_", "cl_" + strings.Repeat("A", 24), "xx_" + id[3:], id + "0", id[:26]} {
		if ValidClientID(bad) {
			t.Errorf("ValidClientID(%q) = true", bad)
		}
	}
}

func TestRandomToken(t *testing.T) {
	for _, n := range []int{1, 6, MinTokenBytes, 32, 64} {
		a, err := RandomToken(n)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := RandomToken(n)
		raw, err := base64.RawURLEncoding.DecodeString(a)
		if err != nil || len(raw) != n || (n >= MinTokenBytes && a == b) {
			t.Errorf("RandomToken(%d) = %q (%d bytes, %v)", n, a, len(raw), err)
		}
	}
	for _, n := range []int{-1, 0} {
		if _, err := RandomToken(n); err == nil {
			t.Errorf("RandomToken(%d): no error", n)
		}
	}
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// TestEntropy asserts SECURITY.md item 6: every secret credential carries at
// least 128 bits, counted as length × log2(alphabet) over an alphabet the
// value provably stays within.
func TestEntropy(t *testing.T) {
	_, full, _ := NewAPIKey()
	_, apiSecret, _ := ParseAPIKey(full)
	_, clientSecret, _ := NewClientCredentials()
	shortest, _ := RandomToken(MinTokenBytes)
	loginToken, _ := RandomToken(32)
	for name, v := range map[string]string{
		"API key secret": apiSecret, "client secret": clientSecret,
		"shortest token": shortest, "login token": loginToken,
	} {
		if strings.Trim(v, base64URLAlphabet) != "" {
			t.Errorf("%s %q leaves the base64url alphabet", name, v)
		}
		if bits := float64(len(v)) * math.Log2(float64(len(base64URLAlphabet))); bits < 128 {
			t.Errorf("%s: %d chars = %.0f bits < 128", name, len(v), bits)
		}
	}
}
