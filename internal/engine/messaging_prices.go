package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/otpd/otpd/internal/store"
)

// The price table: what one message on a channel to a country costs the tenant, in its currency.
// Prices are decimal strings everywhere they are stored or shown; sums and caps are computed in
// billionths of the currency unit (int64), so no float rounding ever decides a cap.

const (
	amountScale    = 1_000_000_000 // billionths
	maxAmountUnits = 999_999_999   // the largest price or cap: 999,999,999.999999999
)

// parseAmount reads a non-negative decimal ("0.0642918", "12", "3.5") with at most nine
// integer and nine fractional digits into billionths.
func parseAmount(s string) (int64, error) {
	whole, frac, hasDot := strings.Cut(s, ".")
	bad := func(part string, maxLen int) bool {
		return part == "" || len(part) > maxLen || strings.ContainsFunc(part, func(r rune) bool { return r < '0' || r > '9' })
	}
	if bad(whole, 9) || (hasDot && bad(frac, 9)) {
		return 0, fmt.Errorf("%q is not a decimal amount", s)
	}
	w, _ := strconv.ParseInt(whole, 10, 64)
	f := int64(0)
	if hasDot {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	}
	return w*amountScale + f, nil
}

// formatAmount writes billionths as the shortest decimal ("0", "0.05", "12.5").
func formatAmount(n int64) string {
	w, f := n/amountScale, n%amountScale
	if f == 0 {
		return strconv.FormatInt(w, 10)
	}
	frac := strings.TrimRight(fmt.Sprintf("%09d", f), "0")
	return strconv.FormatInt(w, 10) + "." + frac
}

// NormalizeAmount validates a decimal amount and returns its shortest form.
func NormalizeAmount(s string) (string, bool) {
	n, err := parseAmount(s)
	if err != nil {
		return "", false
	}
	return formatAmount(n), true
}

// SumAmounts adds decimal amounts; amounts that do not parse count as 0.
func SumAmounts(amounts ...string) string {
	var n int64
	for _, a := range amounts {
		v, _ := parseAmount(a)
		n += v
	}
	return formatAmount(n)
}

// priceChannels are the channels the price table prices.
var priceChannels = []string{ChannelSMS, ChannelViber, ChannelVoice, ChannelWhatsApp}

// PriceList is a tenant's price table.
type PriceList struct {
	Currency string
	Prices   []store.Price
}

// ListPrices returns the tenant's price table (admin only).
func (e *Engine) ListPrices(ctx context.Context, p Principal) (*PriceList, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	s, _, err := e.messagingSettings(ctx, e.store, p.TenantID)
	if err != nil {
		return nil, err
	}
	ps, err := e.store.ListPrices(ctx, p.TenantID)
	if err != nil {
		return nil, err
	}
	return &PriceList{Currency: s.Currency, Prices: ps}, nil
}

// validPriceKey checks a channel and country of the price table and upper-cases the country.
func validPriceKey(channel, country string) (string, error) {
	var errs ValidationErrors
	okChannel := false
	for _, c := range priceChannels {
		okChannel = okChannel || c == channel
	}
	if !okChannel {
		errs = append(errs, fieldErr("channel", "must be one of %s", strings.Join(priceChannels, ", ")))
	}
	country = strings.ToUpper(country)
	if !knownCountry(country) {
		errs = append(errs, fieldErr("country", "must be an ISO 3166 alpha-2 country code"))
	}
	if len(errs) > 0 {
		return "", errs
	}
	return country, nil
}

// SetPrice sets what one message on channel to country costs (admin only).
func (e *Engine) SetPrice(ctx context.Context, p Principal, channel, country, price string) (*store.Price, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	country, err := validPriceKey(channel, country)
	if err != nil {
		return nil, err
	}
	norm, ok := NormalizeAmount(price)
	if !ok {
		return nil, invalid("price", "must be a decimal amount with at most 9 digits before and after the point, e.g. \"0.0642\"")
	}
	row := &store.Price{TenantID: p.TenantID, Channel: channel, Country: country, Price: norm, UpdatedAt: e.clock.Now()}
	err = e.inTx(ctx, func(q store.Queries) error {
		if err := q.PutPrice(ctx, row); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "price.set", channel+":"+country, "ok", "")
	})
	if err != nil {
		return nil, mapStoreErr(err)
	}
	return row, nil
}

// DeletePrice removes a price (the message is then free) (admin only).
func (e *Engine) DeletePrice(ctx context.Context, p Principal, channel, country string) error {
	if err := requireAdmin(p); err != nil {
		return err
	}
	country, err := validPriceKey(channel, country)
	if err != nil {
		return err
	}
	return mapStoreErr(e.inTx(ctx, func(q store.Queries) error {
		if err := q.DeletePrice(ctx, p.TenantID, channel, country); err != nil {
			return err
		}
		return e.audit(ctx, q, p, "price.delete", channel+":"+country, "ok", "")
	}))
}

// priceOf returns what one message on channel to country costs the tenant ("0" when the table
// has no entry).
func (e *Engine) priceOf(ctx context.Context, q store.Queries, tenantID, channel, country string) (string, error) {
	pr, err := q.GetPrice(ctx, tenantID, channel, country)
	if errors.Is(err, store.ErrNotFound) {
		return "0", nil
	}
	if err != nil {
		return "", err
	}
	return pr.Price, nil
}
