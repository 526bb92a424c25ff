package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
)

// Fixed master keys so failures are reproducible.
var (
	masterA = bytes.Repeat([]byte{0xa1}, MasterKeySize)
	masterB = bytes.Repeat([]byte{0xb2}, MasterKeySize)
	masterC = bytes.Repeat([]byte{0xc3}, MasterKeySize)
)

func mustRing(t testing.TB, current []byte, previous ...[]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(current, previous...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewKeyringRejects(t *testing.T) {
	cases := map[string]struct {
		current  []byte
		previous [][]byte
	}{
		"nil current":      {nil, nil},
		"31-byte current":  {masterA[:31], nil},
		"33-byte current":  {append(bytes.Clone(masterA), 0), nil},
		"short previous":   {masterA, [][]byte{masterB[:16]}},
		"current repeated": {masterA, [][]byte{masterA}},
		"previous twice":   {masterA, [][]byte{masterB, masterC, masterB}},
	}
	for name, c := range cases {
		if _, err := NewKeyring(c.current, c.previous...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCurrentID(t *testing.T) {
	sum := sha256.Sum256(append([]byte("otpd-key-id\x00"), masterA...))
	want := hex.EncodeToString(sum[:4])
	if got := mustRing(t, masterA, masterB).CurrentID(); got != want {
		t.Errorf("CurrentID = %s, want %s", got, want)
	}
	if mustRing(t, masterB, masterA).CurrentID() == want {
		t.Error("CurrentID does not follow the current key")
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := mustRing(t, masterA, masterB)
	aad := []byte("messages:0190f0a4-1111")
	for _, n := range []int{0, 1, 3, 15, 16, 17, 1000} {
		pt := bytes.Repeat([]byte{'x'}, n)
		blob, err := k.Seal(pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if len(blob) != n+SealOverhead || blob[0] != 1 || hex.EncodeToString(blob[1:5]) != k.CurrentID() {
			t.Fatalf("blob layout: len %d, header %x", len(blob), blob[:5])
		}
		if bytes.Contains(blob, pt) && n > 3 {
			t.Fatal("plaintext visible in blob")
		}
		got, err := k.Open(blob, aad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open = %q, %v", got, err)
		}
		again, _ := k.Seal(pt, aad)
		if bytes.Equal(again, blob) {
			t.Fatal("two seals of the same plaintext are identical (nonce reuse?)")
		}
		if k.NeedsRotation(blob) {
			t.Error("fresh blob needs rotation")
		}
	}
}

// TestSealFormat opens a blob with an independent reading of the documented
// format: HKDF-SHA256(master, info "otpd seal v1") as the AES-256-GCM key,
// and the version byte and key id authenticated in front of aad.
func TestSealFormat(t *testing.T) {
	k := mustRing(t, masterA)
	blob, err := k.Seal([]byte("seed"), []byte("devices:42"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := hkdf.Key(sha256.New, masterA, nil, "otpd seal v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(sub)
	gcm, _ := cipher.NewGCM(block)
	pt, err := gcm.Open(nil, blob[5:17], blob[17:], append(bytes.Clone(blob[:5]), "devices:42"...))
	if err != nil || string(pt) != "seed" {
		t.Errorf("independent open: %q, %v", pt, err)
	}
}

func TestSealRequiresAAD(t *testing.T) {
	k := mustRing(t, masterA)
	if _, err := k.Seal([]byte("x"), nil); err == nil {
		t.Error("Seal with no associated data: no error")
	}
}

func TestOpenFailures(t *testing.T) {
	k := mustRing(t, masterA)
	aad := []byte("devices:1")
	blob, err := k.Seal([]byte("a TOTP seed of twenty"), aad)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("wrong aad", func(t *testing.T) {
		for _, other := range [][]byte{[]byte("devices:2"), []byte("messages:1"), []byte("devices:1\x00"), nil} {
			if _, err := k.Open(blob, other); !errors.Is(err, ErrDecrypt) {
				t.Errorf("aad %q: %v, want ErrDecrypt", other, err)
			}
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		// A blob claiming ring B's key id but encrypted under A.
		kb := mustRing(t, masterB)
		forged := bytes.Clone(blob)
		copy(forged[1:5], kb.current.id[:])
		_, err := kb.Open(forged, aad)
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("%v, want ErrDecrypt", err)
		}
		if !strings.Contains(err.Error(), "authentication failed") {
			t.Errorf("AEAD error not wrapped: %v", err)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		_, err := mustRing(t, masterB, masterC).Open(blob, aad)
		if !errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrDecrypt) {
			t.Errorf("%v, want ErrUnknownKey", err)
		}
	})
	t.Run("every bit flipped", func(t *testing.T) {
		for i := range len(blob) * 8 {
			tampered := bytes.Clone(blob)
			tampered[i/8] ^= 1 << (i % 8)
			_, err := k.Open(tampered, aad)
			want := ErrDecrypt
			if i/8 >= 1 && i/8 < 5 {
				want = ErrUnknownKey // the key id no longer names a key
			}
			if !errors.Is(err, want) {
				t.Fatalf("bit %d: %v, want %v", i, err, want)
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{0, 1, 5, 17, SealOverhead - 1, len(blob) - 1} {
			if _, err := k.Open(blob[:n], aad); !errors.Is(err, ErrDecrypt) {
				t.Errorf("%d bytes: %v, want ErrDecrypt", n, err)
			}
		}
	})
	t.Run("appended", func(t *testing.T) {
		if _, err := k.Open(append(bytes.Clone(blob), 0), aad); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%v, want ErrDecrypt", err)
		}
	})
}

func TestRotation(t *testing.T) {
	old := mustRing(t, masterA)
	aad := []byte("gateways:smtp-1")
	blob, err := old.Seal([]byte("smtp password"), aad)
	if err != nil {
		t.Fatal(err)
	}
	hash := old.HashCode("challenge-1", "123456")

	rotated := mustRing(t, masterB, masterA)
	if pt, err := rotated.Open(blob, aad); err != nil || string(pt) != "smtp password" {
		t.Fatalf("old blob after rotation: %q, %v", pt, err)
	}
	if !rotated.NeedsRotation(blob) || !rotated.NeedsRotation(hash) {
		t.Error("blob or hash under the previous key does not need rotation")
	}
	if !rotated.CheckCode(hash, "challenge-1", "123456") {
		t.Error("code hashed under the previous key no longer checks")
	}

	fresh, err := rotated.Reseal(blob, aad)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.NeedsRotation(fresh) || rotated.NeedsRotation(rotated.HashCode("c", "1")) {
		t.Error("re-sealed blob or new hash still needs rotation")
	}

	// Once the old key is dropped, only re-sealed data opens.
	retired := mustRing(t, masterB)
	if _, err := retired.Open(blob, aad); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old blob after dropping its key: %v", err)
	}
	if pt, err := retired.Open(fresh, aad); err != nil || string(pt) != "smtp password" {
		t.Errorf("re-sealed blob: %q, %v", pt, err)
	}
	if retired.CheckCode(hash, "challenge-1", "123456") {
		t.Error("hash under a dropped key still checks")
	}
}

func TestNeedsRotationMalformed(t *testing.T) {
	k := mustRing(t, masterB, masterA)
	for _, b := range [][]byte{nil, {1}, {2, 0, 0, 0, 0}, bytes.Repeat([]byte{9}, 60)} {
		if k.NeedsRotation(b) {
			t.Errorf("NeedsRotation(%x) = true", b)
		}
	}
}

func TestHashCode(t *testing.T) {
	k := mustRing(t, masterA)
	h := k.HashCode("challenge-A", "042917")
	if len(h) != CodeHashSize {
		t.Fatalf("hash is %d bytes, want %d", len(h), CodeHashSize)
	}
	if !bytes.Equal(h, k.HashCode("challenge-A", "042917")) {
		t.Error("HashCode is not deterministic")
	}
	if !k.CheckCode(h, "challenge-A", "042917") {
		t.Error("right code refused")
	}
	if bytes.Contains(h, []byte("042917")) {
		t.Error("code visible in its hash")
	}

	refused := map[string]func() bool{
		"wrong code":       func() bool { return k.CheckCode(h, "challenge-A", "042918") },
		"other challenge":  func() bool { return k.CheckCode(h, "challenge-B", "042917") },
		"other ring":       func() bool { return mustRing(t, masterB).CheckCode(h, "challenge-A", "042917") },
		"truncated hash":   func() bool { return k.CheckCode(h[:len(h)-1], "challenge-A", "042917") },
		"extended hash":    func() bool { return k.CheckCode(append(bytes.Clone(h), 0), "challenge-A", "042917") },
		"nil hash":         func() bool { return k.CheckCode(nil, "challenge-A", "042917") },
		"wrong tag":        func() bool { return k.CheckCode(append([]byte{1}, h[1:]...), "challenge-A", "042917") },
		"flipped mac byte": func() bool { return k.CheckCode(flip(h, len(h)-1), "challenge-A", "042917") },
		"flipped key id":   func() bool { return k.CheckCode(flip(h, 2), "challenge-A", "042917") },
	}
	for name, check := range refused {
		if check() {
			t.Errorf("%s: accepted", name)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

// TestHashCodeLengthPrefix: without the length prefix, bind "ab" with code
// "c" and bind "a" with code "bc" would hash the same bytes.
func TestHashCodeLengthPrefix(t *testing.T) {
	k := mustRing(t, masterA)
	if bytes.Equal(k.HashCode("ab", "c"), k.HashCode("a", "bc")) {
		t.Error(`("ab","c") and ("a","bc") collide`)
	}
	if k.CheckCode(k.HashCode("ab", "c"), "a", "bc") {
		t.Error(`hash of ("ab","c") checks as ("a","bc")`)
	}
}

// TestHashCodeFormat recomputes a code hash from the documented format.
func TestHashCodeFormat(t *testing.T) {
	k := mustRing(t, masterA)
	sub, err := hkdf.Key(sha256.New, masterA, nil, "otpd code v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	bind := strings.Repeat("b", 200) // two-byte uvarint length
	m := hmac.New(sha256.New, sub)
	m.Write([]byte{0xc8, 0x01})
	m.Write([]byte(bind + "12345678"))
	want := append(append([]byte{2}, k.current.id[:]...), m.Sum(nil)...)
	if got := k.HashCode(bind, "12345678"); !bytes.Equal(got, want) {
		t.Errorf("HashCode = %x, want %x", got, want)
	}
}

func TestKeyringConcurrent(t *testing.T) {
	k := mustRing(t, masterA, masterB)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			aad := []byte{byte(g)}
			for range 200 {
				blob, err := k.Seal([]byte("secret"), aad)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := k.Open(blob, aad); err != nil {
					t.Error(err)
					return
				}
				if !k.CheckCode(k.HashCode("c", "123456"), "c", "123456") {
					t.Error("CheckCode failed")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestKnows(t *testing.T) {
	a, b, c := bytes.Repeat([]byte{1}, MasterKeySize), bytes.Repeat([]byte{2}, MasterKeySize), bytes.Repeat([]byte{3}, MasterKeySize)
	old, _ := NewKeyring(b)
	other, _ := NewKeyring(c)
	k, err := NewKeyring(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Knows(k.CurrentID()) || !k.Knows(old.CurrentID()) {
		t.Error("the ring does not know its own keys")
	}
	for _, id := range []string{other.CurrentID(), "", "zz", "0011", k.CurrentID() + "00"} {
		if k.Knows(id) {
			t.Errorf("Knows(%q) = true", id)
		}
	}
}
