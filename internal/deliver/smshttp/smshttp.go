// Package smshttp is the generic HTTP delivery provider: one request per message to any SMS,
// Viber, voice or WhatsApp gateway with an HTTP API, described entirely by settings — method,
// URL, headers, a JSON or form body template, a success rule on the status code and the body,
// where the provider's message id is found, and how its delivery-receipt callbacks read.
//
// Templates name the message's parts with placeholders, expanded with the escaping of where they
// stand (URL path, URL query, header, JSON string, form value), so a message text can never
// break out of its place:
//
//	{to}          recipient in E.164, with the plus: +4915112345678
//	{to_digits}   recipient without the plus: 4915112345678
//	{text}        the message text
//	{sender}      the message's sender id, or the provider's default sender
//	{message_id}  otpd's message id (the same on every attempt: an idempotency key)
//	{channel}     sms, viber, voice or whatsapp
//	{receipt_url} the provider's receipt callback URL (when otpd knows its public address)
//	{secret.NAME} the provider's secret NAME
//
// The provider's answer is never logged or stored: errors say only the status code or which
// rule failed.
package smshttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/store"
)

// Type is the provider type name.
const Type = "http"

func init() {
	deliver.RegisterProviderType(deliver.ProviderType{
		Name:     Type,
		Channels: []string{"sms", "viber", "voice", "whatsapp"},
		New:      func(cfg deliver.ProviderConfig) (deliver.Sender, error) { return New(cfg) },
	})
}

// Settings configure a generic HTTP provider.
type Settings struct {
	// URL of the request; placeholders allowed (escaped for the path or the query).
	URL string `json:"url"`
	// Method is POST (default), PUT or GET.
	Method string `json:"method,omitempty"`
	// Headers are sent with every request; placeholders allowed.
	Headers map[string]string `json:"headers,omitempty"`
	// BodyFormat is "json" (default when Body is set), "form" or "none".
	BodyFormat string `json:"body_format,omitempty"`
	// Body is the body template: for json any JSON value whose strings may hold placeholders, for
	// form an object of field → template.
	Body json.RawMessage `json:"body,omitempty"`
	// BasicAuth sends HTTP Basic credentials (placeholders allowed, e.g. "{secret.password}").
	BasicAuth *BasicAuth `json:"basic_auth,omitempty"`
	// Success says which answers mean "accepted".
	Success Success `json:"success,omitzero"`
	// MessageID says where the answer carries the provider's message id.
	MessageID MessageIDRule `json:"message_id,omitzero"`
	// PermanentStatus are the status codes that mean "this message can never be sent" (not
	// retried, no failover). Default 400, 404, 410, 413, 422. Other failures are retried.
	PermanentStatus []int `json:"permanent_status,omitempty"`
	// IdempotencyHeader carries otpd's message id on every request, the same on every attempt.
	// Default "Idempotency-Key"; "-" sends none.
	IdempotencyHeader string `json:"idempotency_header,omitempty"`
	// Sender is the default {sender} when a message has none.
	Sender string `json:"sender,omitempty"`
	// Timeout bounds one request. Default 10s.
	Timeout deliver.Duration `json:"timeout,omitempty"`
	// Receipts, when set, says how the provider's receipt callbacks read.
	Receipts *ReceiptRules `json:"receipts,omitempty"`
}

// BasicAuth is a user name and password template.
type BasicAuth struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Success is the rule an answer must pass to count as accepted. All given parts must hold.
type Success struct {
	// Status lists the accepted status codes. Default: any 2xx.
	Status []int `json:"status,omitempty"`
	// JSONPath names a value in the JSON answer ("status", "messages.0.status"); with Equals it
	// must have that value (compared as text), without it it must exist and not be null or false.
	JSONPath string `json:"json_path,omitempty"`
	Equals   string `json:"equals,omitempty"`
	// Contains is text the answer body must contain.
	Contains string `json:"contains,omitempty"`
}

// MessageIDRule says where the provider's message id is: a JSON path in the answer, or a header.
type MessageIDRule struct {
	JSONPath string `json:"json_path,omitempty"`
	Header   string `json:"header,omitempty"`
}

// ReceiptRules read a receipt callback: a JSON object (or an array of them), or a form.
type ReceiptRules struct {
	// ID is the JSON path or form field of the provider's message id. Required.
	ID string `json:"id"`
	// Status is the JSON path or form field of the delivery status. Required.
	Status string `json:"status"`
	// Error is the JSON path or form field of the provider's error code (optional).
	Error string `json:"error,omitempty"`
	// Statuses maps the provider's status words (case-insensitive) to accepted, delivered,
	// undelivered or failed, on top of the common words (see DefaultStatuses).
	Statuses map[string]string `json:"statuses,omitempty"`
}

// DefaultStatuses are the status words every receipt understands (lower case).
var DefaultStatuses = map[string]string{
	"accepted": store.MsgAccepted, "acceptd": store.MsgAccepted, "queued": store.MsgAccepted,
	"enroute": store.MsgAccepted, "buffered": store.MsgAccepted, "sent": store.MsgAccepted,
	"sending": store.MsgAccepted, "submitted": store.MsgAccepted,
	"delivered": store.MsgDelivered, "delivrd": store.MsgDelivered, "read": store.MsgDelivered,
	"undelivered": store.MsgUndelivered, "undeliv": store.MsgUndelivered,
	"undeliverable": store.MsgUndelivered, "expired": store.MsgUndelivered,
	"failed": store.MsgFailed, "rejected": store.MsgFailed, "rejectd": store.MsgFailed,
	"deleted": store.MsgFailed, "error": store.MsgFailed,
}

// Sender delivers through one configured HTTP API.
type Sender struct {
	id       string
	method   string
	urlPath  tmpl // before '?', path-escaped
	urlQuery tmpl // after '?', query-escaped
	hasQuery bool
	headers  []header
	format   string
	jsonBody any
	form     []formField
	user     *tmpl
	pass     *tmpl
	success  Success
	msgID    MessageIDRule
	perm     []int
	idemp    string
	sender   string
	secrets  map[string]string
	receipt  string
	receipts *ReceiptRules
	statuses map[string]string
	client   *http.Client
	log      *slog.Logger
}

type header struct {
	name  string
	value tmpl
}

type formField struct {
	name  string
	value tmpl
}

// New builds a Sender from its configuration; it checks every setting and placeholder.
func New(cfg deliver.ProviderConfig) (*Sender, error) {
	var st Settings
	if err := deliver.DecodeSettings(cfg.Settings, &st); err != nil {
		return nil, err
	}
	s := &Sender{id: cfg.ID, secrets: cfg.Secrets, receipt: cfg.ReceiptURL, success: st.Success,
		msgID: st.MessageID, sender: st.Sender, receipts: st.Receipts, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	parse := func(field, text string) tmpl {
		t, err := parseTemplate(text, cfg.Secrets)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
		return t
	}
	u, err := url.Parse(strings.NewReplacer("{", "x", "}", "x").Replace(st.URL))
	switch {
	case st.URL == "":
		errs = append(errs, errors.New("url is required"))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, errors.New("url must be an absolute http:// or https:// URL"))
	}
	path, query, hasQuery := strings.Cut(st.URL, "?")
	s.urlPath, s.urlQuery, s.hasQuery = parse("url", path), parse("url", query), hasQuery
	s.method = strings.ToUpper(cmpOr(st.Method, http.MethodPost))
	if !slices.Contains([]string{http.MethodPost, http.MethodPut, http.MethodGet}, s.method) {
		errs = append(errs, errors.New("method must be POST, PUT or GET"))
	}
	names := make([]string, 0, len(st.Headers))
	for k := range st.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !validHeaderName(k) {
			errs = append(errs, fmt.Errorf("headers: %q is not a header name", k))
			continue
		}
		s.headers = append(s.headers, header{k, parse("headers."+k, st.Headers[k])})
	}
	s.format = st.BodyFormat
	if s.format == "" {
		s.format = "json"
		if len(st.Body) == 0 {
			s.format = "none"
		}
	}
	switch s.format {
	case "json":
		if len(st.Body) == 0 {
			errs = append(errs, errors.New("body is required with body_format json"))
			break
		}
		var v any
		if err := json.Unmarshal(st.Body, &v); err != nil {
			errs = append(errs, errors.New("body must be JSON"))
			break
		}
		body, err := compileJSON(v, cfg.Secrets)
		if err != nil {
			errs = append(errs, fmt.Errorf("body: %w", err))
		}
		s.jsonBody = body
	case "form":
		var fields map[string]string
		if err := json.Unmarshal(st.Body, &fields); err != nil {
			errs = append(errs, errors.New("body must be an object of strings with body_format form"))
			break
		}
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s.form = append(s.form, formField{k, parse("body."+k, fields[k])})
		}
	case "none":
		if len(st.Body) != 0 {
			errs = append(errs, errors.New("body must be empty with body_format none"))
		}
	default:
		errs = append(errs, errors.New("body_format must be json, form or none"))
	}
	if s.method == http.MethodGet && s.format != "none" {
		errs = append(errs, errors.New("a GET request has no body: use body_format none and put the placeholders in the url"))
	}
	if st.BasicAuth != nil {
		u, p := parse("basic_auth.username", st.BasicAuth.Username), parse("basic_auth.password", st.BasicAuth.Password)
		s.user, s.pass = &u, &p
	}
	for _, c := range st.Success.Status {
		if c < 100 || c > 599 {
			errs = append(errs, fmt.Errorf("success.status: %d is not an HTTP status", c))
		}
	}
	if st.Success.Equals != "" && st.Success.JSONPath == "" {
		errs = append(errs, errors.New("success.equals needs success.json_path"))
	}
	if st.MessageID.Header != "" && !validHeaderName(st.MessageID.Header) {
		errs = append(errs, errors.New("message_id.header is not a header name"))
	}
	s.perm = st.PermanentStatus
	if s.perm == nil {
		s.perm = []int{400, 404, 410, 413, 422}
	}
	switch s.idemp = st.IdempotencyHeader; s.idemp {
	case "":
		s.idemp = "Idempotency-Key"
	case "-":
		s.idemp = ""
	default:
		if !validHeaderName(s.idemp) {
			errs = append(errs, errors.New("idempotency_header is not a header name"))
		}
	}
	timeout := time.Duration(st.Timeout)
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if timeout < 0 || timeout > 2*time.Minute {
		errs = append(errs, errors.New("timeout must be between 0 and 2m"))
	}
	if r := st.Receipts; r != nil {
		if r.ID == "" || r.Status == "" {
			errs = append(errs, errors.New("receipts needs id and status"))
		}
		s.statuses = map[string]string{}
		for k, v := range DefaultStatuses {
			s.statuses[k] = v
		}
		for k, v := range r.Statuses {
			switch v {
			case store.MsgAccepted, store.MsgDelivered, store.MsgUndelivered, store.MsgFailed:
				s.statuses[strings.ToLower(k)] = v
			default:
				errs = append(errs, fmt.Errorf("receipts.statuses.%s: %q is not accepted, delivered, undelivered or failed", k, v))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	// Redirects are not followed (they would carry our secrets elsewhere); a tenant's provider
	// connects only to public addresses.
	s.client = deliver.HTTPClient(timeout, cfg.RestrictDestinations)
	return s, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Name is the provider's id.
func (s *Sender) Name() string { return s.id }

// ReportsReceipts is true when receipt callbacks are configured.
func (s *Sender) ReportsReceipts() bool { return s.receipts != nil }

// maxAnswer bounds how much of an answer is read.
const maxAnswer = 64 << 10

// Send makes one request for m.
func (s *Sender) Send(ctx context.Context, m deliver.Message) (string, error) {
	v := s.values(m)
	req, err := s.request(ctx, v)
	if err != nil {
		return "", deliver.Permanent(err)
	}
	res, err := s.client.Do(req)
	if err != nil {
		return "", transportError(ctx, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return "", fmt.Errorf("reading the answer (HTTP %d) failed", res.StatusCode)
	}
	if !s.statusOK(res.StatusCode) {
		if slices.Contains(s.perm, res.StatusCode) {
			return "", deliver.Permanent(fmt.Errorf("the provider refused the message (HTTP %d)", res.StatusCode))
		}
		return "", fmt.Errorf("the provider answered HTTP %d", res.StatusCode)
	}
	var doc any
	parsed := false
	parseDoc := func() bool {
		if !parsed {
			doc, _ = decodeJSON(body)
			parsed = true
		}
		return doc != nil
	}
	if c := s.success.Contains; c != "" && !bytes.Contains(body, []byte(c)) {
		return "", fmt.Errorf("the answer (HTTP %d) does not contain the success text", res.StatusCode)
	}
	if p := s.success.JSONPath; p != "" {
		if !parseDoc() {
			return "", fmt.Errorf("the answer (HTTP %d) is not JSON", res.StatusCode)
		}
		val, ok := lookupPath(doc, p)
		switch {
		case !ok:
			return "", fmt.Errorf("the answer (HTTP %d) has no %s", res.StatusCode, p)
		case s.success.Equals != "" && text(val) != s.success.Equals:
			return "", fmt.Errorf("the answer (HTTP %d) has another %s than the success value", res.StatusCode, p)
		case s.success.Equals == "" && (val == nil || val == false):
			return "", fmt.Errorf("the answer (HTTP %d) has %s empty", res.StatusCode, p)
		}
	}
	id := ""
	if h := s.msgID.Header; h != "" {
		id = res.Header.Get(h)
	}
	if p := s.msgID.JSONPath; p != "" && id == "" && parseDoc() {
		if val, ok := lookupPath(doc, p); ok && val != nil {
			id = text(val)
		}
	}
	// An id that does not look like one is treated as absent (receipts then cannot match).
	return deliver.ProviderMessageID(id), nil
}

func (s *Sender) statusOK(code int) bool {
	if len(s.success.Status) == 0 {
		return code >= 200 && code < 300
	}
	return slices.Contains(s.success.Status, code)
}

// values are the placeholder values of one message.
func (s *Sender) values(m deliver.Message) map[string]string {
	sender := m.Sender
	if sender == "" {
		sender = s.sender
	}
	v := map[string]string{
		"to": m.To, "to_digits": strings.TrimPrefix(m.To, "+"), "text": m.Text, "sender": sender,
		"message_id": m.ID, "channel": m.Channel, "receipt_url": s.receipt,
	}
	for k, sec := range s.secrets {
		v["secret."+k] = sec
	}
	return v
}

func (s *Sender) request(ctx context.Context, v map[string]string) (*http.Request, error) {
	target := s.urlPath.expand(v, url.PathEscape)
	if s.hasQuery {
		target += "?" + s.urlQuery.expand(v, url.QueryEscape)
	}
	var body io.Reader
	contentType := ""
	switch s.format {
	case "json":
		b, err := json.Marshal(expandJSON(s.jsonBody, v))
		if err != nil {
			return nil, errors.New("the body template does not render")
		}
		body, contentType = bytes.NewReader(b), "application/json"
	case "form":
		f := url.Values{}
		for _, fld := range s.form {
			f.Set(fld.name, fld.value.expand(v, nil))
		}
		body, contentType = strings.NewReader(f.Encode()), "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequestWithContext(ctx, s.method, target, body)
	if err != nil {
		return nil, errors.New("the URL template does not render to a valid URL")
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", "otpd")
	for _, h := range s.headers {
		val := h.value.expand(v, nil)
		if strings.ContainsAny(val, "\r\n\x00") {
			return nil, fmt.Errorf("header %s would hold a line break", h.name)
		}
		req.Header.Set(h.name, val)
	}
	if s.idemp != "" {
		req.Header.Set(s.idemp, v["message_id"])
	}
	if s.user != nil {
		req.SetBasicAuth(s.user.expand(v, nil), s.pass.expand(v, nil))
	}
	return req, nil
}

// transportError describes a failed request without its URL (which may carry a secret).
func transportError(ctx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	switch {
	case deliver.IsPrivateDestination(err):
		// Retried (and failed over): the name may resolve elsewhere later, and the secondary
		// may be somewhere else.
		return errors.New("the provider's address is not a public address; tenant providers may not connect there")
	case ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()):
		return errors.New("the provider did not answer in time")
	case errors.As(err, new(*net.OpError)):
		return errors.New("the provider could not be reached")
	}
	return errors.New("the request to the provider failed")
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// ---- receipts ----

// ParseReceipts reads one receipt callback: a JSON object or array of objects, or a form (the
// query string counts as form fields too).
func (s *Sender) ParseReceipts(contentType string, query url.Values, body []byte) ([]deliver.Receipt, error) {
	if s.receipts == nil {
		return nil, errors.New("this provider has no receipt rules")
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	var items []func(path string) (string, bool)
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		doc, err := decodeJSON(body)
		if err != nil {
			return nil, errors.New("the receipt is not valid JSON")
		}
		list, isList := doc.([]any)
		if !isList {
			list = []any{doc}
		}
		for _, it := range list {
			items = append(items, func(p string) (string, bool) {
				v, ok := lookupPath(it, p)
				if !ok || v == nil {
					return "", false
				}
				return text(v), true
			})
		}
	case mt == "application/x-www-form-urlencoded" || (mt == "" && len(bytes.TrimSpace(body)) == 0):
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errors.New("the receipt is not a valid form")
		}
		for k, vs := range query {
			if _, ok := form[k]; !ok {
				form[k] = vs
			}
		}
		items = append(items, func(p string) (string, bool) {
			if !form.Has(p) {
				return "", false
			}
			return form.Get(p), true
		})
	default:
		return nil, ErrReceiptType
	}
	var out []deliver.Receipt
	for _, get := range items {
		id, ok1 := get(s.receipts.ID)
		st, ok2 := get(s.receipts.Status)
		if !ok1 || !ok2 || id == "" {
			continue
		}
		status, known := s.statuses[strings.ToLower(strings.TrimSpace(st))]
		if !known {
			continue
		}
		r := deliver.Receipt{ProviderMessageID: id, Status: status}
		if s.receipts.Error != "" {
			r.Error, _ = get(s.receipts.Error)
			r.Error = shortCode(r.Error)
		}
		out = append(out, r)
	}
	return out, nil
}

// ErrReceiptType: the callback's content type is neither JSON nor a form.
var ErrReceiptType = errors.New("a receipt must be JSON or a form")

// shortCode keeps an error code short and printable.
func shortCode(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > 32 {
		s = s[:32]
	}
	return s
}

// ---- templates ----

// tmpl is a parsed template: literal text and placeholders, alternating.
type tmpl struct {
	lit   []string // len(names)+1 literals
	names []string
}

var placeholderRE = regexp.MustCompile(`\{([a-z_]+(?:\.[A-Za-z0-9_]+)?)\}`)

var knownPlaceholders = map[string]bool{"to": true, "to_digits": true, "text": true, "sender": true,
	"message_id": true, "channel": true, "receipt_url": true}

func parseTemplate(s string, secrets map[string]string) (tmpl, error) {
	var t tmpl
	last := 0
	for _, m := range placeholderRE.FindAllStringSubmatchIndex(s, -1) {
		name := s[m[2]:m[3]]
		switch {
		case knownPlaceholders[name]:
		case strings.HasPrefix(name, "secret."):
			if _, ok := secrets[strings.TrimPrefix(name, "secret.")]; !ok {
				return t, fmt.Errorf("placeholder {%s} names a secret the provider does not have", name)
			}
		default:
			return t, fmt.Errorf("unknown placeholder {%s}", name)
		}
		t.lit = append(t.lit, s[last:m[0]])
		t.names = append(t.names, name)
		last = m[1]
	}
	t.lit = append(t.lit, s[last:])
	return t, nil
}

// expand fills the placeholders, escaping each value with esc (nil: as is).
func (t tmpl) expand(v map[string]string, esc func(string) string) string {
	if len(t.names) == 0 {
		return strings.Join(t.lit, "")
	}
	var b strings.Builder
	for i, name := range t.names {
		b.WriteString(t.lit[i])
		val := v[name]
		if esc != nil {
			val = esc(val)
		}
		b.WriteString(val)
	}
	b.WriteString(t.lit[len(t.lit)-1])
	return b.String()
}

// compileJSON turns the strings of a JSON body template into templates.
func compileJSON(v any, secrets map[string]string) (any, error) {
	switch x := v.(type) {
	case string:
		return parseTemplate(x, secrets)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := compileJSON(e, secrets)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := compileJSON(e, secrets)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	}
	return v, nil
}

// expandJSON renders a compiled JSON template; values become JSON strings, escaped by Marshal.
func expandJSON(v any, vals map[string]string) any {
	switch x := v.(type) {
	case tmpl:
		return x.expand(vals, nil)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = expandJSON(e, vals)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = expandJSON(e, vals)
		}
		return out
	}
	return v
}

// ---- JSON paths ----

// lookupPath finds a value by a dotted path: "status", "messages.0.id", "$.messages[0].id".
func lookupPath(doc any, path string) (any, bool) {
	path = strings.TrimPrefix(strings.TrimPrefix(path, "$"), ".")
	path = strings.NewReplacer("[", ".", "]", "").Replace(path)
	cur := doc
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			continue
		}
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[seg]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// decodeJSON decodes one JSON document, keeping numbers as written (message ids are often long
// numbers).
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return v, nil
}

// text is a JSON value as text: strings and numbers as written, everything else in JSON form.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	b, _ := json.Marshal(v)
	return string(b)
}
