package otp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestGenerateCodeFormat(t *testing.T) {
	for d := 1; d <= MaxCodeDigits; d++ {
		for range 50 {
			code, err := GenerateCode(d)
			if err != nil {
				t.Fatal(err)
			}
			if !ValidFormat(code, d) {
				t.Fatalf("GenerateCode(%d) = %q", d, code)
			}
		}
	}
	for _, d := range []int{-1, 0, MaxCodeDigits + 1} {
		if _, err := GenerateCode(d); err == nil {
			t.Errorf("GenerateCode(%d): no error", d)
		}
	}
}

func le64(vs ...uint64) io.Reader {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return bytes.NewReader(b)
}

// TestGenerateCodeRejection drives the sampler with chosen "random" values:
// values in the incomplete last block of 2^64 mod 10^d must be redrawn,
// the largest value below it must be used, and leading zeros must survive.
func TestGenerateCodeRejection(t *testing.T) {
	const n = 1_000_000
	limit := (^uint64(0) / n) * n // largest multiple of n below 2^64
	tests := []struct {
		name   string
		values []uint64
		want   string
	}{
		{"zero keeps leading zeros", []uint64{0}, "000000"},
		{"small", []uint64{123}, "000123"},
		{"last accepted value", []uint64{limit - 1}, "999999"},
		{"limit is redrawn", []uint64{limit, 42}, "000042"},
		{"max is redrawn", []uint64{^uint64(0), ^uint64(0) - 1, 7}, "000007"},
	}
	for _, tt := range tests {
		got, err := generateCode(le64(tt.values...), 6)
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	// The reader must not be read beyond what one code needs.
	r := le64(5, 6)
	if _, err := generateCode(r, 6); err != nil {
		t.Fatal(err)
	}
	if code, _ := generateCode(r, 6); code != "000006" {
		t.Errorf("second code = %q, want 000006", code)
	}
}

func TestGenerateCodeReaderError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := generateCode(iotest.ErrReader(boom), 6); !errors.Is(err, boom) {
		t.Errorf("error = %v, want wrapped boom", err)
	}
	if _, err := generateCode(bytes.NewReader([]byte{1, 2, 3}), 6); err == nil {
		t.Error("short read: no error")
	}
}

// Chi-square critical values with false-failure probability 1e-7 each
// (computed from the regularised upper incomplete gamma function). The test
// runs 7 statistics, so a correct generator fails it with probability below
// 1e-6.
const (
	chi2Crit9df  = 50.17  // 10 cells
	chi2Crit99df = 190.23 // 100 cells
)

// TestGenerateCodeUniform runs chi-square goodness-of-fit tests over 10^6
// six-digit codes: the digit frequency at each position (the first digit is
// where a modulo bias would show) and the frequency of the first two digits
// together. It takes about 0.1 s (0.4 s with -race); -short cuts it to 10^5.
func TestGenerateCodeUniform(t *testing.T) {
	samples := 1_000_000
	if testing.Short() {
		samples = 100_000
	}
	var pos [6][10]int
	var firstTwo [100]int
	for range samples {
		code, err := GenerateCode(6)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 6 {
			pos[i][code[i]-'0']++
		}
		firstTwo[int(code[0]-'0')*10+int(code[1]-'0')]++
	}
	for i := range pos {
		if x := chiSquare(pos[i][:], samples); x > chi2Crit9df {
			t.Errorf("digit position %d: chi-square %.2f > %.2f (counts %v)", i, x, chi2Crit9df, pos[i])
		}
	}
	if x := chiSquare(firstTwo[:], samples); x > chi2Crit99df {
		t.Errorf("first two digits: chi-square %.2f > %.2f", x, chi2Crit99df)
	}
}

func chiSquare(counts []int, total int) float64 {
	exp := float64(total) / float64(len(counts))
	var x float64
	for _, c := range counts {
		d := float64(c) - exp
		x += d * d / exp
	}
	return x
}

// TestChiSquareDetectsBias makes sure the statistic and thresholds would
// catch a realistic mistake: reducing a 20-bit random value modulo 10^6,
// which makes codes below 048576 twice as likely.
func TestChiSquareDetectsBias(t *testing.T) {
	const samples = 1_000_000
	var first [10]int
	for i := range samples {
		v := uint32(i*2654435761) % (1 << 20) % 1_000_000 // evenly spread 20-bit values
		first[v/100_000]++
	}
	if x := chiSquare(first[:], samples); x <= chi2Crit9df {
		t.Errorf("biased generator passed: chi-square %.2f", x)
	}
}

func TestGenerateSecret(t *testing.T) {
	for alg, want := range map[Algorithm]int{SHA1: 20, SHA256: 32, SHA512: 64, "": 20} {
		a, err := GenerateSecret(alg)
		if err != nil || len(a) != want {
			t.Fatalf("GenerateSecret(%q) = %d bytes, %v; want %d", alg, len(a), err, want)
		}
		b, _ := GenerateSecret(alg)
		if bytes.Equal(a, b) {
			t.Errorf("GenerateSecret(%q) repeated itself", alg)
		}
	}
	if _, err := GenerateSecret("MD5"); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("GenerateSecret(MD5): %v", err)
	}
}
