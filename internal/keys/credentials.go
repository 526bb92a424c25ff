package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Credential formats. Every secret is 32 random bytes (256 bits) in
// unpadded base64url, 43 characters.
const (
	// APIKeyPrefix starts every API key, so a leaked key is recognisable
	// (secret scanners, log filters).
	APIKeyPrefix = "otpd_"
	// APIKeyIDLen is the length of the public key id: 8 random bytes, hex.
	APIKeyIDLen = 16
	// SecretLen is the length of an API key secret or client secret.
	SecretLen = 43
	// APIKeyLen is the length of a whole API key: "otpd_" id "_" secret.
	APIKeyLen = len(APIKeyPrefix) + APIKeyIDLen + 1 + SecretLen

	// ClientIDPrefix starts every OAuth2 client id; 24 lowercase hex
	// characters (12 random bytes) follow. The id is public, so its
	// randomness only has to make collisions negligible.
	ClientIDPrefix = "cl_"
	// ClientIDLen is the length of a whole client id.
	ClientIDLen = len(ClientIDPrefix) + 24

	// MinTokenBytes is the least a secret token may carry: 128 bits
	// (NIST SP 800-63B-4, ASVS 7.2.3).
	MinTokenBytes = 16

	secretBytes = 32
)

var b64 = base64.RawURLEncoding.Strict()

var errTokenSize = errors.New("keys: a token needs at least one random byte")

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return nil, fmt.Errorf("keys: reading random bytes: %w", err)
	}
	return b, nil
}

func newSecret() (string, error) {
	b, err := randomBytes(secretBytes)
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(b), nil
}

// NewAPIKey returns a new API key. id (16 lowercase hex characters) is
// public: it is stored in clear and used to look the key up. full is
// "otpd_" + id + "_" + secret and is shown to the user once; only
// HashSecret(secret) is stored.
func NewAPIKey() (id, full string, err error) {
	idb, err := randomBytes(APIKeyIDLen / 2)
	if err != nil {
		return "", "", err
	}
	secret, err := newSecret()
	if err != nil {
		return "", "", err
	}
	id = hex.EncodeToString(idb)
	return id, APIKeyPrefix + id + "_" + secret, nil
}

// ParseAPIKey splits an API key into its id and secret. It accepts exactly
// the form NewAPIKey makes: the prefix, 16 lowercase hex characters, "_",
// and 43 base64url characters that decode canonically to 32 bytes. The
// length is checked first, so long input costs nothing. The secret may
// itself contain '_'; the parts are found by position, not by splitting.
func ParseAPIKey(full string) (id, secret string, ok bool) {
	if len(full) != APIKeyLen || !strings.HasPrefix(full, APIKeyPrefix) {
		return "", "", false
	}
	id = full[len(APIKeyPrefix) : len(APIKeyPrefix)+APIKeyIDLen]
	if !isLowerHex(id) || full[len(APIKeyPrefix)+APIKeyIDLen] != '_' {
		return "", "", false
	}
	secret = full[len(APIKeyPrefix)+APIKeyIDLen+1:]
	if !ValidSecret(secret) {
		return "", "", false
	}
	return id, secret, true
}

// ValidSecret reports whether s has the form of an API key secret or client
// secret: 43 base64url characters encoding exactly 32 bytes. Check it before
// hashing untrusted input.
func ValidSecret(s string) bool {
	if len(s) != SecretLen {
		return false
	}
	var buf [secretBytes + 2]byte
	n, err := b64.Decode(buf[:], []byte(s))
	return err == nil && n == secretBytes
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// HashSecret returns the SHA-256 of an API key secret or client secret, the
// only form in which secrets are stored. A fast unsalted hash is right here:
// the secrets are 256-bit random values, not passwords, so there is nothing
// to brute-force and no dictionary to precompute.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// CheckSecret reports whether secret hashes to hash, comparing the digests in
// constant time.
func CheckSecret(secret string, hash []byte) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], hash) == 1
}

// NewClientCredentials returns a new OAuth2 client id ("cl_" and 24 lowercase
// hex characters, public) and client secret (32 random bytes, unpadded
// base64url; store only HashSecret of it).
func NewClientCredentials() (clientID, clientSecret string, err error) {
	idb, err := randomBytes((ClientIDLen - len(ClientIDPrefix)) / 2)
	if err != nil {
		return "", "", err
	}
	clientSecret, err = newSecret()
	if err != nil {
		return "", "", err
	}
	return ClientIDPrefix + hex.EncodeToString(idb), clientSecret, nil
}

// ValidClientID reports whether s has the form NewClientCredentials makes.
func ValidClientID(s string) bool {
	return len(s) == ClientIDLen && strings.HasPrefix(s, ClientIDPrefix) && isLowerHex(s[len(ClientIDPrefix):])
}

// RandomToken returns nbytes random bytes from crypto/rand as unpadded
// base64url (ceil(4·nbytes/3) characters). A token that guards anything
// (login tokens, session ids, CSRF values) needs at least MinTokenBytes;
// one-time login tokens use 32. Smaller sizes are allowed for values that
// only need to be unique, such as a worker's lease owner. nbytes < 1 is an
// error.
func RandomToken(nbytes int) (string, error) {
	if nbytes < 1 {
		return "", errTokenSize
	}
	b, err := randomBytes(nbytes)
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(b), nil
}
