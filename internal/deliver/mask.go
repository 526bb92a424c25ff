package deliver

import "strings"

// MaskRecipient hides most of an address for logs and metrics labels, so a line
// can still be matched to a user without spelling out personal data:
//
//	alice@example.com → a***@example.com
//	+15555550100      → +1*****0100
//	anything else     → first character + ***
//
// The number of stars is fixed, so the mask does not reveal the length either.
func MaskRecipient(r string) string {
	r = strings.TrimSpace(r)
	if r == "" {
		return ""
	}
	if at := strings.LastIndexByte(r, '@'); at >= 0 {
		return firstRune(r[:at]) + "***" + r[at:]
	}
	if isPhone(r) {
		plus := ""
		if r[0] == '+' {
			plus = "+"
		}
		var digits []byte
		for i := 0; i < len(r); i++ {
			if r[i] >= '0' && r[i] <= '9' {
				digits = append(digits, r[i])
			}
		}
		switch n := len(digits); {
		case n <= 4:
			return plus + "****"
		case n < 8:
			return plus + string(digits[:1]) + "*****" + string(digits[n-2:])
		default:
			return plus + string(digits[:1]) + "*****" + string(digits[n-4:])
		}
	}
	return firstRune(r) + "***"
}

func firstRune(s string) string {
	for _, c := range s {
		return string(c)
	}
	return ""
}

// isPhone: an optional +, then digits with the usual separators.
func isPhone(s string) bool {
	if s[0] == '+' {
		s = s[1:]
	}
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return false
		}
	}
	return digits > 0
}
