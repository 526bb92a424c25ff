package keys

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// MasterKeySize is the length of a master key in bytes (256 bits).
const MasterKeySize = 32

// errMasterKeyFormat never includes the input: it may be a real key with a
// typo in it.
var errMasterKeyFormat = fmt.Errorf("keys: a master key is 64 hex characters or the base64 of %d bytes", MasterKeySize)

// GenerateMasterKey returns a new random master key.
func GenerateMasterKey() ([]byte, error) {
	k := make([]byte, MasterKeySize)
	if _, err := io.ReadFull(rand.Reader, k); err != nil {
		return nil, fmt.Errorf("keys: reading random bytes: %w", err)
	}
	return k, nil
}

// masterKeyEncodings are tried in order after hex. Strict decoding refuses
// non-canonical trailing bits, so each key has one spelling per encoding.
var masterKeyEncodings = []*base64.Encoding{
	base64.StdEncoding.Strict(),
	base64.URLEncoding.Strict(),
	base64.RawStdEncoding.Strict(),
	base64.RawURLEncoding.Strict(),
}

// ParseMasterKey reads a master key as written in configuration or the
// environment: surrounding white space is trimmed, then the text must be
// 64 hex characters (either case) or standard or URL-safe base64, padded or
// not, that decodes to exactly MasterKeySize bytes. Errors never echo the
// input.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	// No encoding of 32 bytes is longer than 64 characters, and the base64
	// decoders would silently skip line breaks inside the key.
	if len(s) > 2*MasterKeySize || strings.ContainsAny(s, "\r\n") {
		return nil, errMasterKeyFormat
	}
	if len(s) == 2*MasterKeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range masterKeyEncodings {
		k, err := enc.DecodeString(s)
		if err == nil && len(k) == MasterKeySize {
			return k, nil
		}
	}
	return nil, errMasterKeyFormat
}

// EncodeMasterKey returns k as lowercase hex, the form ParseMasterKey reads
// first and `otpd` prints.
func EncodeMasterKey(k []byte) string {
	return hex.EncodeToString(k)
}
