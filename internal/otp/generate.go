package otp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
)

// pow10 holds 10^n for n = 0..MaxCodeDigits.
var pow10 = [MaxCodeDigits + 1]uint64{
	1, 10, 100, 1_000, 10_000, 100_000, 1_000_000,
	10_000_000, 100_000_000, 1_000_000_000, 10_000_000_000,
}

// GenerateCode returns a random code of digits decimal digits (1 to 10),
// leading zeros kept, for email, SMS and similar channels. Every one of the
// 10^digits codes is equally likely: 64-bit values from crypto/rand that
// would make a plain modulo biased are rejected and drawn again.
func GenerateCode(digits int) (string, error) {
	return generateCode(rand.Reader, digits)
}

func generateCode(r io.Reader, digits int) (string, error) {
	if digits < 1 || digits > MaxCodeDigits {
		return "", fmt.Errorf("otp: code length must be 1 to %d digits, got %d", MaxCodeDigits, digits)
	}
	n := pow10[digits]
	// limit is the largest multiple of n that fits in 2^64; values at or
	// above it are the incomplete last block and are rejected. For n ≤ 10^10
	// that happens with probability below 2^-30 per draw.
	limit := -(-n % n) // 2^64 - (2^64 mod n), computed mod 2^64
	if limit == 0 {
		limit = ^uint64(0) // unreachable for n ≤ 10^10; keeps the loop finite
	}
	var b [8]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("otp: reading random bytes: %w", err)
		}
		v := binary.LittleEndian.Uint64(b[:])
		if v >= limit {
			continue
		}
		v %= n
		buf := make([]byte, digits)
		for i := digits - 1; i >= 0; i-- {
			buf[i] = '0' + byte(v%10)
			v /= 10
		}
		return string(buf), nil
	}
}

// GenerateSecret returns a new random HOTP/TOTP secret as long as the
// algorithm's digest: 20 bytes for SHA1 (160 bits, RFC 4226 R6), 32 for
// SHA256 and 64 for SHA512 (RFC 6238 §5.1).
func GenerateSecret(alg Algorithm) ([]byte, error) {
	n := alg.Size()
	if n == 0 {
		return nil, fmt.Errorf("%w %q", ErrAlgorithm, string(alg))
	}
	secret := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, secret); err != nil {
		return nil, fmt.Errorf("otp: reading random bytes: %w", err)
	}
	return secret, nil
}
