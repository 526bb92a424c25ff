package engine

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PINs are hashed with argon2id before they are sealed (sealing alone would let anyone holding
// the master key read them; hashing alone would let anyone holding the database test PINs
// offline). The parameters are OWASP's recommended minimum for argon2id — 19 MiB of memory, 2
// passes, 1 lane — with a 16-byte random salt and a 32-byte tag, kept in the PHC string format
// so they can be raised later without breaking existing hashes:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt, base64>$<tag, base64>
//
// One hash costs about 30 ms of CPU and 19 MiB; a device lock after a few failures bounds
// guessing, and argonSlots bounds how many hashes run at once so a burst of PIN checks cannot
// exhaust memory.
const (
	argonMemory  = 19 * 1024 // KiB
	argonTime    = 2
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
)

var argonSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

func argonKey(ctx context.Context, pin string, salt []byte, m, t uint32, p uint8, n uint32) ([]byte, error) {
	select {
	case argonSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-argonSlots }()
	return argon2.IDKey([]byte(pin), salt, t, m, p, n), nil
}

// hashPIN returns the PHC string of pin.
func hashPIN(ctx context.Context, pin string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := argonKey(ctx, pin, salt, argonMemory, argonTime, argonThreads, argonKeyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime,
		argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

var errPINHash = errors.New("malformed PIN hash")

// checkPIN reports whether pin matches the PHC string phc, comparing in constant time.
func checkPIN(ctx context.Context, phc, pin string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, errPINHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m < 8 || m > 1<<21 || t < 1 || t > 16 || p < 1 {
		return false, errPINHash
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(want) < 16 || len(want) > 64 {
		return false, errPINHash
	}
	got, err := argonKey(ctx, pin, salt, m, t, p, uint32(len(want)))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
