// Package keys owns the keyring and everything secret at rest: sealing
// (AES-256-GCM with a key id and row-bound associated data), keyed hashing of
// one-time codes, and the generation and hashing of API keys, client secrets
// and random tokens.
//
// A master key never encrypts anything itself. Each purpose gets its own
// subkey, derived with HKDF-SHA256 under a distinct info string, so a key
// used for sealing is never also an HMAC key. Every sealed blob and code hash
// names the master key it was made with (a 4-byte key id), so the keyring can
// hold the current key and any number of previous ones: new data is always
// made with the current key, old data stays readable until it is re-sealed,
// and rotation happens online.
//
// API keys and client secrets do not depend on the master key (they are
// hashed with plain SHA-256), so rotating the master key never invalidates
// a credential.
package keys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Errors returned by Keyring.Open.
var (
	// ErrUnknownKey means the blob was made with a master key that is not in
	// the keyring (for example, a previous key was dropped too early).
	ErrUnknownKey = errors.New("keys: blob was sealed with a key that is not in the keyring")
	// ErrDecrypt means the blob is malformed, was tampered with, or is being
	// opened with the wrong associated data. The AEAD error is wrapped too.
	ErrDecrypt = errors.New("keys: cannot decrypt")
)

// Format tags: the first byte of every sealed blob and code hash. They differ
// so NeedsRotation can tell the two apart by their first byte.
const (
	tagSealV1     = 1
	tagCodeHashV1 = 2
)

// HKDF info strings; each names one purpose of a subkey.
const (
	infoSeal   = "otpd seal v1"
	infoCode   = "otpd code v1"
	keyIDLabel = "otpd-key-id\x00"
)

const (
	idSize       = 4
	nonceSize    = 12 // the GCM standard nonce
	sealHeader   = 1 + idSize
	sealOverhead = SealOverhead
	codeHashSize = CodeHashSize
)

var errEmptyAAD = errors.New("keys: associated data must not be empty; bind the blob to its row")

// SealOverhead is how many bytes Seal adds to the plaintext: version byte,
// key id, nonce and GCM tag.
const SealOverhead = 1 + 4 + 12 + 16

// CodeHashSize is the length of a HashCode result: tag byte, key id and
// HMAC-SHA256.
const CodeHashSize = 1 + 4 + sha256.Size

type keyID [idSize]byte

// ringKey is one master key, reduced to the subkeys derived from it.
type ringKey struct {
	id      keyID
	aead    cipher.AEAD
	codeKey []byte
}

// Keyring holds the current master key and any previous ones. It is
// immutable after NewKeyring and safe for concurrent use.
type Keyring struct {
	current *ringKey
	byID    map[keyID]*ringKey
}

// NewKeyring builds a keyring. current seals and hashes everything new;
// previous keys only open and check what was made with them. Every key must
// be MasterKeySize bytes, and no two may share a key id (which in practice
// means no key may be listed twice). The keyring keeps only derived subkeys,
// not the master keys.
func NewKeyring(current []byte, previous ...[]byte) (*Keyring, error) {
	k := &Keyring{byID: make(map[keyID]*ringKey, 1+len(previous))}
	for i, master := range append([][]byte{current}, previous...) {
		rk, err := newRingKey(master)
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("current key: %w", err)
			}
			return nil, fmt.Errorf("previous key %d: %w", i, err)
		}
		if _, dup := k.byID[rk.id]; dup {
			return nil, fmt.Errorf("keys: key id %x appears twice in the keyring", rk.id[:])
		}
		k.byID[rk.id] = rk
		if i == 0 {
			k.current = rk
		}
	}
	return k, nil
}

func newRingKey(master []byte) (*ringKey, error) {
	if len(master) != MasterKeySize {
		return nil, fmt.Errorf("keys: master key must be %d bytes, got %d", MasterKeySize, len(master))
	}
	rk := &ringKey{id: idOf(master)}
	sealKey, err := hkdf.Key(sha256.New, master, nil, infoSeal, 32)
	if err != nil {
		return nil, fmt.Errorf("keys: deriving seal key: %w", err)
	}
	block, err := aes.NewCipher(sealKey)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if rk.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if rk.codeKey, err = hkdf.Key(sha256.New, master, nil, infoCode, 32); err != nil {
		return nil, fmt.Errorf("keys: deriving code key: %w", err)
	}
	return rk, nil
}

// idOf names a master key without revealing anything usable about it.
func idOf(master []byte) keyID {
	h := sha256.New()
	h.Write([]byte(keyIDLabel))
	h.Write(master)
	var id keyID
	copy(id[:], h.Sum(nil))
	return id
}

// CurrentID returns the current key's id as 8 lowercase hex characters, for
// logs and status pages.
func (k *Keyring) CurrentID() string {
	return hex.EncodeToString(k.current.id[:])
}

// Knows reports whether the ring holds the key with this id (as CurrentID prints it).
func (k *Keyring) Knows(id string) bool {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != idSize {
		return false
	}
	_, ok := k.byID[keyID(b)]
	return ok
}

// Seal encrypts plaintext with AES-256-GCM under the current key. aad binds
// the blob to where it is stored (for example "messages:"+id), so a blob
// copied to another row or column fails to open; it must not be empty.
//
// The blob is: version byte (1) | 4-byte key id | 12-byte random nonce |
// ciphertext and 16-byte tag. The version byte and key id are authenticated
// along with aad. Random 96-bit nonces are safe for far more than any
// deployment seals under one key (NIST SP 800-38D caps it at 2^32).
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	if len(aad) == 0 {
		return nil, errEmptyAAD
	}
	rk := k.current
	out := make([]byte, sealHeader+nonceSize, sealOverhead+len(plaintext))
	out[0] = tagSealV1
	copy(out[1:sealHeader], rk.id[:])
	nonce := out[sealHeader:]
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, fmt.Errorf("keys: reading nonce: %w", err)
	}
	return rk.aead.Seal(out, nonce, plaintext, sealAAD(out[:sealHeader], aad)), nil
}

func sealAAD(header, aad []byte) []byte {
	ad := make([]byte, 0, len(header)+len(aad))
	return append(append(ad, header...), aad...)
}

// Open decrypts a blob made by Seal with the same aad. It returns
// ErrUnknownKey if the blob's key is not in the keyring, and an error
// wrapping ErrDecrypt if the blob is malformed or does not authenticate
// (tampered, wrong aad, or a different key with a colliding id).
func (k *Keyring) Open(blob, aad []byte) ([]byte, error) {
	if len(blob) < sealOverhead {
		return nil, fmt.Errorf("%w: blob too short", ErrDecrypt)
	}
	if blob[0] != tagSealV1 {
		return nil, fmt.Errorf("%w: unknown blob version %d", ErrDecrypt, blob[0])
	}
	rk, ok := k.byID[keyID(blob[1:sealHeader])]
	if !ok {
		return nil, fmt.Errorf("%w (id %x)", ErrUnknownKey, blob[1:sealHeader])
	}
	nonce := blob[sealHeader : sealHeader+nonceSize]
	pt, err := rk.aead.Open(nil, nonce, blob[sealHeader+nonceSize:], sealAAD(blob[:sealHeader], aad))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	return pt, nil
}

// Reseal opens blob and seals its plaintext again under the current key,
// for background rotation after NeedsRotation reports true.
func (k *Keyring) Reseal(blob, aad []byte) ([]byte, error) {
	pt, err := k.Open(blob, aad)
	if err != nil {
		return nil, err
	}
	return k.Seal(pt, aad)
}

// NeedsRotation reports whether a sealed blob or a code hash was made with a
// key other than the current one. Malformed input reports false: there is
// nothing a rotation job could do with it.
func (k *Keyring) NeedsRotation(blob []byte) bool {
	switch {
	case len(blob) >= sealOverhead && blob[0] == tagSealV1,
		len(blob) == codeHashSize && blob[0] == tagCodeHashV1:
		return !bytes.Equal(blob[1:1+idSize], k.current.id[:])
	}
	return false
}

// HashCode returns a keyed hash of a one-time code bound to bind (the
// challenge id, optionally with its purpose), so a code issued for one
// challenge never matches another:
//
//	tag byte (2) | 4-byte key id | HMAC-SHA256(code subkey, uvarint(len(bind)) || bind || code)
//
// The length prefix keeps ("ab", "c") and ("a", "bc") apart. The result is
// CodeHashSize bytes.
func (k *Keyring) HashCode(bind, code string) []byte {
	out := make([]byte, 1+idSize, codeHashSize)
	out[0] = tagCodeHashV1
	copy(out[1:], k.current.id[:])
	return appendCodeMAC(out, k.current.codeKey, bind, code)
}

func appendCodeMAC(dst, key []byte, bind, code string) []byte {
	m := hmac.New(sha256.New, key)
	var n [binary.MaxVarintLen64]byte
	m.Write(binary.AppendUvarint(n[:0], uint64(len(bind))))
	m.Write([]byte(bind))
	m.Write([]byte(code))
	return m.Sum(dst)
}

// CheckCode reports whether code, bound to bind, is the code hashed in hash.
// It uses the key the hash names, so codes issued before a rotation still
// check. The digests are compared with hmac.Equal. A malformed hash or an
// unknown key id gives false.
func (k *Keyring) CheckCode(hash []byte, bind, code string) bool {
	if len(hash) != codeHashSize || hash[0] != tagCodeHashV1 {
		return false
	}
	rk, ok := k.byID[keyID(hash[1:1+idSize])]
	if !ok {
		return false
	}
	var buf [sha256.Size]byte
	return hmac.Equal(appendCodeMAC(buf[:0], rk.codeKey, bind, code), hash[1+idSize:])
}
