package otp_test

import (
	"fmt"
	"time"

	"github.com/otpd/otpd/internal/otp"
)

// The caller keeps the last accepted step per device and refuses anything at
// or before it, so a code works once even inside its window.
func ExampleValidateTOTP() {
	secret := []byte("12345678901234567890") // use otp.GenerateSecret in real code
	serverNow := time.Unix(1111111111, 0)
	var lastStep uint64 // stored with the device

	code, _, _ := otp.TOTP(secret, serverNow.Add(-30*time.Second), 30*time.Second, 6, otp.SHA1)

	for attempt := 1; attempt <= 2; attempt++ {
		step, ok := otp.ValidateTOTP(secret, code, serverNow, otp.TOTPOptions{})
		if !ok || step <= lastStep {
			fmt.Printf("attempt %d: rejected\n", attempt)
			continue
		}
		lastStep = step // in a store: a conditional update on the old value
		fmt.Printf("attempt %d: accepted at step %d\n", attempt, step)
	}
	// Output:
	// attempt 1: accepted at step 37037036
	// attempt 2: rejected
}

func ExampleValidateHOTP() {
	secret := []byte("12345678901234567890")
	counter := uint64(3) // the next counter the server expects

	// The user pressed the button twice without logging in.
	code, _ := otp.HOTP(secret, 5, 6, otp.SHA1)

	matched, ok := otp.ValidateHOTP(secret, code, counter, 10, 6, otp.SHA1)
	if ok {
		counter = matched + 1
	}
	fmt.Println(ok, matched, counter)
	// Output: true 5 6
}

func ExampleGenerateCode() {
	code, err := otp.GenerateCode(6)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(code), otp.ValidFormat(code, 6))
	// Output: 6 true
}

func ExampleHOTP() {
	code, _ := otp.HOTP([]byte("12345678901234567890"), 1, 6, otp.SHA1)
	fmt.Println(code)
	// Output: 287082
}
