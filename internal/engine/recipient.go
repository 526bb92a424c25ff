package engine

import (
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// Channels a verification can use. "none" means the caller delivers the code itself.
const (
	ChannelNone     = "none"
	ChannelEmail    = "email"
	ChannelSMS      = "sms"
	ChannelViber    = "viber"
	ChannelVoice    = "voice"
	ChannelWhatsApp = "whatsapp"
)

// knownChannel reports whether c is a channel otpd knows (configured or not).
func knownChannel(c string) bool {
	switch c {
	case ChannelNone, ChannelEmail, ChannelSMS, ChannelViber, ChannelVoice, ChannelWhatsApp:
		return true
	}
	return false
}

const maxRecipientLen = 320 // RFC 5321 path limit, also ample for phone numbers and handles

// NormalizeEmail validates a bare address (no display name) and case-folds it, so that
// "Alice@X.com" and "alice@x.com" share one limit bucket (SECURITY.md 24).
func NormalizeEmail(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxRecipientLen || strings.ContainsAny(s, "<> \t\r\n\"") {
		return "", false
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", false
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || !strings.Contains(s[at+1:], ".") {
		return "", false
	}
	return strings.ToLower(s), true
}

// NormalizePhone reads an international number — "+14155550100", "+1 (415) 555-0100",
// "0014155550100" or bare international digits "14155550100" — and returns its E.164 form and
// region (ISO 3166 alpha-2). National-format numbers are refused: without a country they are
// ambiguous, and guessing would put two people in one limit bucket.
func NormalizePhone(s string) (e164, region string, ok bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 32 {
		return "", "", false
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '(' || r == ')' || r == '.':
		default:
			return "", "", false
		}
	}
	d := b.String()
	switch {
	case strings.HasPrefix(d, "+"):
	case strings.HasPrefix(d, "00"):
		d = "+" + d[2:]
	default:
		d = "+" + d
	}
	if len(d) < 8 || len(d) > 16 { // E.164: at most 15 digits
		return "", "", false
	}
	n, err := phonenumbers.Parse(d, "ZZ")
	if err != nil || !phonenumbers.IsPossibleNumber(n) {
		return "", "", false
	}
	return phonenumbers.Format(n, phonenumbers.E164), phonenumbers.GetRegionCodeForNumber(n), true
}

// normalizeRecipient returns the canonical form of to for channel.
func normalizeRecipient(channel, to string) (string, error) {
	switch channel {
	case ChannelEmail:
		if n, ok := NormalizeEmail(to); ok {
			return n, nil
		}
		return "", invalid("to", "must be an email address")
	case ChannelSMS, ChannelViber, ChannelVoice, ChannelWhatsApp:
		if n, _, ok := NormalizePhone(to); ok {
			return n, nil
		}
		return "", invalid("to", "must be a phone number in international format, e.g. +14155550100")
	default: // none: any handle the caller uses; emails and phones still share buckets
		t := strings.TrimSpace(to)
		if t == "" || len(t) > maxRecipientLen || !utf8.ValidString(t) || strings.ContainsFunc(t, isControl) {
			return "", invalid("to", "must be 1–%d printable characters", maxRecipientLen)
		}
		if strings.Contains(t, "@") {
			if n, ok := NormalizeEmail(t); ok {
				return n, nil
			}
		} else if strings.HasPrefix(t, "+") || strings.HasPrefix(t, "00") {
			if n, _, ok := NormalizePhone(t); ok {
				return n, nil
			}
		}
		return t, nil
	}
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
