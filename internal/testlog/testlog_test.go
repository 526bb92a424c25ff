package testlog

import "testing"

func TestLeaks(t *testing.T) {
	for _, c := range []struct {
		log, secret string
		want        bool
	}{
		{`"time":"2026-11-24T12:53:41.765593912Z"`, "765593", false},
		{`"request_id":"a123456b"`, "123456", false},
		{`"msg":"your code is 123456."`, "123456", true},
		{`{"code":"123456"}`, "123456", true},
		{"123456", "123456", true},
		{`key otpd_abc_def`, "otpd_abc_def", true},
		{`nothing`, "otpd_abc_def", false},
		{`anything`, "", false},
	} {
		if got := Leaks(c.log, c.secret); got != c.want {
			t.Errorf("Leaks(%q, %q) = %v", c.log, c.secret, got)
		}
	}
}
