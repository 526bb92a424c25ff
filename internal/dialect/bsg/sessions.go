package bsg

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
)

// The six verification operations: send_otp, resend_otp, verify_otp, cancel_otp, status_otp,
// otp_list.

// maxIDLen is BSG's bound on an authentication id ("The maximum length is 36 characters").
const maxIDLen = 36

// validID reports whether s can be an authentication id: 1–36 printable ASCII characters (otpd's
// ids are UUIDs). Anything else names no session, whatever the store would make of it.
func validID(s string) bool {
	return s != "" && len(s) <= maxIDLen && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' })
}

func sessionID(r *http.Request) (string, *apiError) {
	id := r.PathValue("id")
	if !validID(id) {
		return "", service(http.StatusNotFound, msgAuthNotFound)
	}
	return id, nil
}

func (h *Handler) send(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	raw, e := readRaw(w, r)
	if e != nil {
		return e
	}
	req, e := decodeSend(raw)
	if e != nil {
		return e
	}
	if _, _, ok := engine.NormalizePhone("+" + req.Recipient); !ok {
		return invalidFields(fieldErrors{"recipient": {msgNotValid}})
	}
	ip, e := clientIP(r)
	if e != nil {
		return e
	}
	s, err := h.eng.SendBSG(r.Context(), p, engine.BSGSend{
		Recipient: "+" + req.Recipient, Channel: req.Channel, Sender: req.Sender, SenderAlt: req.SenderAlt,
		TemplateID: req.TemplateID, Lifetime: time.Duration(req.Lifetime) * time.Second,
		MaxTries: req.MaxTries, Digits: req.Digits, ClientIP: ip,
	})
	if err != nil {
		return fromEngine(err)
	}
	writeJSON(w, http.StatusCreated, data{toSession(s, false)})
	return nil
}

func (h *Handler) verify(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	id, e := sessionID(r)
	if e != nil {
		return e
	}
	raw, e := readRaw(w, r)
	if e != nil {
		return e
	}
	code, e := decodeVerify(raw)
	if e != nil {
		return e
	}
	s, outcome, err := h.eng.VerifyBSG(r.Context(), p, id, code)
	switch {
	case errors.Is(err, engine.ErrMalformedCode):
		// Not the session's number of digits: it cannot match, and no try is spent.
		return service(http.StatusNotFound, msgWrongCode)
	case err != nil:
		return fromEngine(err)
	}
	switch outcome {
	case engine.OutcomeVerified:
		writeJSON(w, http.StatusOK, data{toSession(s, false)})
		return nil
	case engine.OutcomeFinished:
		return finished(s.Status)
	}
	// Wrong, and also the last allowed wrong code: the session is failed from now on, and
	// later calls say so (422 "Authentication failed status").
	return service(http.StatusNotFound, msgWrongCode)
}

func (h *Handler) resend(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	id, e := sessionID(r)
	if e != nil {
		return e
	}
	s, err := h.eng.ResendBSG(r.Context(), p, id)
	if err != nil {
		return fromEngine(err)
	}
	writeJSON(w, http.StatusOK, data{toSession(s, false)})
	return nil
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	id, e := sessionID(r)
	if e != nil {
		return e
	}
	s, err := h.eng.CancelBSG(r.Context(), p, id)
	if err != nil {
		return fromEngine(err)
	}
	writeJSON(w, http.StatusOK, data{toSession(s, false)})
	return nil
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	id, e := sessionID(r)
	if e != nil {
		return e
	}
	s, err := h.eng.GetBSG(r.Context(), p, id)
	if err != nil {
		return fromEngine(err)
	}
	writeJSON(w, http.StatusOK, data{toSession(s, true)})
	return nil
}

// query holds a parsed query string and the errors found reading it.
type query struct {
	v    url.Values
	errs fieldErrors
}

func parseQuery(r *http.Request) (*query, *apiError) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalidFields(fieldErrors{"query": {msgNotValid}})
	}
	return &query{v: v, errs: fieldErrors{}}, nil
}

// list returns a parameter given as name, name[] or name[N] (PHP-style arrays), in order.
func (q *query) list(name string) []string {
	out := append([]string{}, q.v[name]...)
	out = append(out, q.v[name+"[]"]...)
	for i := 0; ; i++ {
		vs, ok := q.v[name+"["+strconv.Itoa(i)+"]"]
		if !ok {
			break
		}
		out = append(out, vs...)
	}
	return out
}

// integer reads an optional integer parameter within [lo, hi].
func (q *query) integer(name string, def, lo, hi int) int {
	s := q.v.Get(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		q.errs.add(name, msgType("integer"))
	case n < lo || n > hi:
		if hi == maxOffset {
			q.errs.add(name, "This value should be greater than or equal to 0.")
		} else {
			q.errs.add(name, msgBetween(lo, hi))
		}
	default:
		return n
	}
	return def
}

const maxOffset = 1 << 30

// choice reads an optional parameter from a fixed set.
func (q *query) choice(name, def string, allowed ...string) string {
	s := q.v.Get(name)
	if s == "" {
		return def
	}
	if !slices.Contains(allowed, s) {
		q.errs.add(name, msgChoice)
		return def
	}
	return s
}

// ids reads a list parameter of at most max unique values, each accepted by ok.
func (q *query) ids(name string, max int, ok func(string) bool) []string {
	vs := q.list(name)
	if len(vs) == 0 {
		return nil
	}
	if len(vs) > max {
		q.errs.add(name, "This collection should contain "+strconv.Itoa(max)+" elements or less.")
		return nil
	}
	seen := map[string]bool{}
	for _, v := range vs {
		if !ok(v) {
			q.errs.add(name, msgNotValid)
			return nil
		}
		if seen[v] {
			q.errs.add(name, "This collection should contain only unique elements.")
			return nil
		}
		seen[v] = true
	}
	return vs
}

var sessionSorts = []string{"id", "status", "channel", "recipient", "created_at", "finished_at", "country_code"}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	q, e := parseQuery(r)
	if e != nil {
		return e
	}
	var f engine.BSGListFilter
	for _, b := range []struct {
		name string
		end  bool
		dst  *time.Time
	}{{"filter[from]", false, &f.From}, {"filter[to]", true, &f.To}} {
		s := q.v.Get(b.name)
		if s == "" {
			q.errs.add(b.name, msgBlank)
			continue
		}
		t, ok := parseDate(s, b.end)
		if !ok {
			q.errs.add(b.name, "This value is not a valid date.")
			continue
		}
		*b.dst = t
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		q.errs.add("filter[to]", "This value should be greater than or equal to filter[from].")
	}
	f.IDs = q.ids("filter[ids]", 3, validID)
	f.Status = q.choice("filter[status]", "", store.StatusPending, store.StatusVerified, store.StatusFailed, store.StatusCanceled, store.StatusExpired)
	f.Channel = q.choice("filter[channel]", "", "sms", "viber")
	if s := q.v.Get("filter[recipient]"); s != "" {
		if recipientRE.MatchString(s) {
			f.Recipient = "+" + s
		} else {
			q.errs.add("filter[recipient]", msgNotValid)
		}
	}
	if s := q.v.Get("filter[country_code]"); s != "" {
		if countryCodeRE.MatchString(s) {
			f.CountryCode = strings.ToUpper(s)
		} else {
			q.errs.add("filter[country_code]", msgNotValid)
		}
	}
	f.Offset = q.integer("page[offset]", 0, 0, maxOffset)
	f.Limit = q.integer("page[limit]", 10, 10, 500)
	f.Sort = q.choice("sort", "id", sessionSorts...)
	f.Desc = q.choice("way", "asc", "asc", "desc") == "desc"
	if len(q.errs) > 0 {
		return invalidFields(q.errs)
	}
	sessions, total, err := h.eng.ListBSG(r.Context(), p, f)
	if err != nil {
		return fromEngine(err)
	}
	out := make([]session, len(sessions))
	for i := range sessions {
		out[i] = toSession(&sessions[i], true)
	}
	writeJSON(w, http.StatusOK, data{list{Total: total, List: out}})
	return nil
}
