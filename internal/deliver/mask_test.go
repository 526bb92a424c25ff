package deliver

import "testing"

var maskTests = []struct{ in, want string }{
	{"", ""},
	{"alice@example.com", "a***@example.com"},
	{"a@example.com", "a***@example.com"},
	{"@example.com", "***@example.com"},
	{"élodie@example.fr", "é***@example.fr"},
	{"+15555550100", "+1*****0100"},
	{"+44 20 7946 0958", "+4*****0958"},
	{"0015555550100", "0*****0100"},
	{"12345", "1*****45"},
	{"+123", "+****"},
	{"viber-user-42", "v***"},
}

func TestMaskRecipient(t *testing.T) {
	for _, tt := range maskTests {
		if got := MaskRecipient(tt.in); got != tt.want {
			t.Errorf("MaskRecipient(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
