package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/otpd/otpd/internal/clock"
	"github.com/otpd/otpd/internal/deliver"
	"github.com/otpd/otpd/internal/deliver/logsender"
	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/keys"
	"github.com/otpd/otpd/internal/store/sqlstore"
)

// loadOpenAPI parses the served document with kin-openapi and validates it.
func loadOpenAPI(t testing.TB) *openapi3.T {
	t.Helper()
	l := openapi3.NewLoader()
	doc, err := l.LoadFromData(OpenAPIJSON())
	if err != nil {
		t.Fatalf("load openapi document: %v", err)
	}
	if err := doc.Validate(l.Context); err != nil {
		t.Fatalf("openapi document does not validate: %v", err)
	}
	return doc
}

// documentedOps lists "METHOD /path" → operation for every operation of doc.
func documentedOps(doc *openapi3.T) map[string]*openapi3.Operation {
	out := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			out[method+" "+path] = op
		}
	}
	return out
}

// samplePath fills each {param} of an OpenAPI/ServeMux path template.
func samplePath(tpl string) string {
	segs := strings.Split(tpl, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			segs[i] = "x-" + strings.Trim(s, "{}")
		}
	}
	return strings.Join(segs, "/")
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadOpenAPI(t)
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	if doc.Info.Title != "otpd" || doc.Info.Version == "" {
		t.Errorf("info = %q %q", doc.Info.Title, doc.Info.Version)
	}
	if len(doc.Servers) == 0 || doc.Servers[0].URL != "http://127.0.0.1:8080" {
		t.Errorf("servers = %v", doc.Servers)
	}
	ss := doc.Components.SecuritySchemes
	if b := ss["bearer"]; b == nil || b.Value.Type != "http" || b.Value.Scheme != "bearer" {
		t.Errorf("security scheme bearer missing or wrong")
	}
	if k := ss["apiKey"]; k == nil || k.Value.Type != "apiKey" || k.Value.In != "header" || k.Value.Name != "x-api-key" {
		t.Errorf("security scheme apiKey missing or wrong")
	}

	ids := map[string]string{}
	for name, op := range documentedOps(doc) {
		if op.OperationID == "" {
			t.Errorf("%s: no operationId", name)
		} else if prev, dup := ids[op.OperationID]; dup {
			t.Errorf("%s: operationId %q also used by %s", name, op.OperationID, prev)
		}
		ids[op.OperationID] = name
		if op.Summary == "" {
			t.Errorf("%s: no summary", name)
		}
		authed := op.Security == nil // inherits the document's bearer/apiKey requirement
		statuses := op.Responses.Map()
		need := []string{}
		if authed {
			need = append(need, "401", "500")
		}
		if op.RequestBody != nil {
			need = append(need, "400", "413", "415")
		}
		if strings.Contains(name, "{id}") {
			need = append(need, "404")
		}
		for _, s := range need {
			if statuses[s] == nil {
				t.Errorf("%s: response %s is not documented", name, s)
			}
		}
		ok := false
		for s, r := range statuses {
			if strings.HasPrefix(s, "2") {
				ok = true
			}
			if r.Value == nil || r.Value.Description == nil || *r.Value.Description == "" {
				t.Errorf("%s %s: no description", name, s)
			}
			if s >= "400" {
				for ct := range r.Value.Content {
					if ct != "application/problem+json" {
						t.Errorf("%s %s: error content %q, want application/problem+json", name, s, ct)
					}
				}
			}
		}
		if !ok {
			t.Errorf("%s: no 2xx response", name)
		}
	}

	// Every code toProblem and decode can produce is in the Problem schema, and nothing else.
	codes := doc.Components.Schemas["Problem"].Value.Properties["code"].Value.Enum
	want := []string{"invalid_json", "invalid_request", "malformed_code", "unauthorized", "forbidden",
		"not_found", "method_not_allowed", "session_finished", "conflict", "body_too_large",
		"unsupported_media_type", "channel_unavailable", "idempotency_mismatch", "rate_limited",
		"max_sends", "internal", "not_ready"}
	var got []string
	for _, c := range codes {
		got = append(got, c.(string))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Problem.code enum = %v, want %v", got, want)
	}
}

// The same document is served at GET /v1/openapi.json, without authentication.
func TestOpenAPIServed(t *testing.T) {
	s := New(Options{})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if !bytes.Equal(rec.Body.Bytes(), OpenAPIJSON()) {
		t.Errorf("served document differs from OpenAPIJSON()")
	}
	var v map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v["openapi"] != "3.1.0" {
		t.Errorf("served document is not the 3.1 JSON document: %v", err)
	}
}

func TestOpenAPIYAMLToJSON(t *testing.T) {
	got, err := yamlToJSON([]byte("a:\n  200: {x: [1, true, null]}\n  '201': ok\nb: 1.5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":{"200":{"x":[1,true,null]},"201":"ok"},"b":1.5}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := yamlToJSON([]byte("a:\n  1: x\n  '1': y\n")); err == nil {
		t.Error("a key that is both 1 and '1' was accepted")
	}
	if _, err := yamlToJSON([]byte("a: [\n")); err == nil {
		t.Error("broken YAML was accepted")
	}
}

// Every route of the server has an operation in the document, every /v1 operation of the
// document has a route, authentication agrees, and the mux really dispatches each documented
// operation (including the operational endpoints registered outside routes()).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	ops := documentedOps(doc)

	routed := map[string]bool{}
	for _, rt := range (&Server{devInbox: true}).routes() {
		name := rt.method + " " + rt.path
		routed[name] = true
		op := ops[name]
		if op == nil {
			t.Errorf("route %s has no operation in openapi.yaml", name)
			continue
		}
		if docAuth := op.Security == nil || len(*op.Security) > 0; docAuth != rt.auth {
			t.Errorf("%s: document says authenticated=%v, route says %v", name, docAuth, rt.auth)
		}
	}
	for name := range ops {
		_, path, _ := strings.Cut(name, " ")
		if strings.HasPrefix(path, "/v1/") && path != "/v1/openapi.json" && !routed[name] {
			t.Errorf("operation %s is documented but not in routes()", name)
		}
	}

	s := New(Options{DevInbox: true})
	for name := range ops {
		method, path, _ := strings.Cut(name, " ")
		_, pattern := s.mux.Handler(httptest.NewRequest(method, samplePath(path), nil))
		if pattern != name {
			t.Errorf("documented %s is served by mux pattern %q", name, pattern)
		}
	}
	// Without the log provider the dev inbox is not routed at all.
	if _, pattern := New(Options{}).mux.Handler(httptest.NewRequest("GET", "/v1/dev/messages", nil)); pattern != "" {
		t.Errorf("dev inbox routed without DevInbox: %q", pattern)
	}
}

// ---- response validation against a real server ----------------------------------------------

// refusingSender is a provider that refuses every message for good, so the outbox gives up and
// a session's delivery becomes "failed".
type refusingSender struct{}

func (refusingSender) Name() string { return "refusing" }
func (refusingSender) Send(context.Context, deliver.Message) (string, error) {
	return "", deliver.Permanent(errors.New("recipient refused"))
}

// reqCheck says what the document must think of a request.
type reqCheck int

const (
	reqAuto    reqCheck = iota // valid for an expected 2xx, not checked otherwise
	reqValid                   // the document accepts the request
	reqInvalid                 // the document refuses the request, as the server does
	reqSkip                    // not checked (the document cannot express the server's rule)
)

type oapiCall struct {
	method, path string
	key          string            // API key sent as a bearer token; "" for none
	body         string            // raw request body; "" for none
	header       map[string]string // extra request headers; "" deletes
	status       int               // expected status
	code         string            // expected problem code when status >= 400
	req          reqCheck
}

type oapiEnv struct {
	t      *testing.T
	doc    *openapi3.T
	ops    *http.ServeMux // dispatches requests to documented "METHOD /template"
	srv    *httptest.Server
	clk    *clock.Fake
	st     *sqlstore.Store
	close  func()
	worker *deliver.Worker
	admin  string
	seen   map[string]bool // "METHOD /template status" answered
	codes  map[string]bool // problem codes answered
}

func newOAPIEnv(t *testing.T) *oapiEnv {
	t.Helper()
	ctx := context.Background()
	doc := loadOpenAPI(t)
	st, err := sqlstore.Open(ctx, filepath.Join(t.TempDir(), "otpd.db"))
	if err != nil {
		t.Fatal(err)
	}
	closeStore := sync.OnceFunc(func() { st.Close() })
	t.Cleanup(closeStore)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	mk, err := keys.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keys.NewKeyring(mk)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	clk := clock.NewFake(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	inbox := logsender.New(st, kr, quiet)
	inbox.Clock = clk
	w := &deliver.Worker{Outbox: st, Keys: kr, Clock: clk, Logger: quiet, Senders: deliver.Registry{
		engine.ChannelEmail: inbox, engine.ChannelSMS: inbox, engine.ChannelViber: inbox,
		engine.ChannelVoice: refusingSender{},
	}} // no whatsapp provider: channel_unavailable
	e, err := engine.New(engine.Options{Store: st, Keys: kr, Clock: clk, Logger: quiet,
		Channels: []string{engine.ChannelEmail, engine.ChannelSMS, engine.ChannelViber, engine.ChannelVoice},
		// The provider tests' gateways listen on loopback, which tenants' providers may not
		// reach by default.
		Delivery: engine.DeliveryOptions{AllowPrivateDestinations: true}})
	if err != nil {
		t.Fatal(err)
	}
	_, admin, err := e.Bootstrap(ctx, "")
	if err != nil || admin == "" {
		t.Fatalf("bootstrap: %q %v", admin, err)
	}
	srv := httptest.NewServer(New(Options{Engine: e, Logger: quiet, DevInbox: true, Ready: st.Ping}))
	t.Cleanup(srv.Close)

	ops := http.NewServeMux()
	for name := range documentedOps(doc) {
		ops.HandleFunc(name, func(http.ResponseWriter, *http.Request) {})
	}
	return &oapiEnv{t: t, doc: doc, ops: ops, srv: srv, clk: clk, st: st, close: closeStore,
		worker: w, admin: admin, seen: map[string]bool{}, codes: map[string]bool{}}
}

// deliver runs the outbox once, as the background worker would.
func (e *oapiEnv) deliver() {
	e.t.Helper()
	if _, err := e.worker.RunOnce(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// do sends c, checks the status and problem code, validates request and response against the
// document, and returns the decoded JSON body (nil when there is none).
func (e *oapiEnv) do(c oapiCall) map[string]any {
	t := e.t
	t.Helper()
	name := c.method + " " + c.path
	req, err := http.NewRequest(c.method, e.srv.URL+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	for k, v := range c.header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	raw, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("%s: read body: %v", name, err)
	}
	if res.StatusCode != c.status {
		t.Fatalf("%s: status %d, want %d: %s", name, res.StatusCode, c.status, raw)
	}
	var body map[string]any
	if strings.Contains(res.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("%s: response is not a JSON object: %v: %s", name, err, raw)
		}
	}
	if c.status >= 400 {
		if got, _ := body["code"].(string); got != c.code {
			t.Errorf("%s: problem code %q, want %q: %s", name, got, c.code, raw)
		}
		e.codes[c.code] = true
	}
	e.validate(c, req.Header, res, raw, body)
	return body
}

func (e *oapiEnv) validate(c oapiCall, reqHeader http.Header, res *http.Response, raw []byte, body map[string]any) {
	t := e.t
	t.Helper()
	ctx := context.Background()
	name := c.method + " " + c.path
	vreq := httptest.NewRequest(c.method, e.doc.Servers[0].URL+c.path, strings.NewReader(c.body))
	vreq.Header = reqHeader.Clone()
	_, pattern := e.ops.Handler(vreq)
	if pattern == "" {
		e.validateUnrouted(name, res, raw)
		return
	}
	method, tpl, _ := strings.Cut(pattern, " ")
	item := e.doc.Paths.Value(tpl)
	op := item.GetOperation(method)
	e.seen[fmt.Sprintf("%s %d", pattern, res.StatusCode)] = true

	in := &openapi3filter.RequestValidationInput{
		Request:    vreq,
		PathParams: pathParams(tpl, vreq.URL.Path),
		Route:      &routers.Route{Spec: e.doc, Server: e.doc.Servers[0], Path: tpl, PathItem: item, Method: method, Operation: op},
		Options:    &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	check := c.req
	if check == reqAuto && c.status < 400 {
		check = reqValid
	}
	switch err := openapi3filter.ValidateRequest(ctx, in); {
	case check == reqValid && err != nil:
		t.Errorf("%s: the document refuses a request the server accepts: %v", name, err)
	case check == reqInvalid && err == nil:
		t.Errorf("%s: the document accepts a request the server refuses with %d %s", name, c.status, c.code)
	}

	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 res.StatusCode,
		Header:                 res.Header,
		Body:                   io.NopCloser(bytes.NewReader(raw)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s: response %d does not match the document: %v\n%s", name, res.StatusCode, err, raw)
	}

	resp := op.Responses.Status(res.StatusCode)
	if resp == nil {
		return // reported above
	}
	if len(resp.Value.Content) == 0 && len(raw) != 0 {
		t.Errorf("%s: %d documented without a body, got %q", name, res.StatusCode, raw)
	}
	if mt := resp.Value.Content.Get(res.Header.Get("Content-Type")); mt != nil && body != nil {
		for _, f := range undocumentedFields(mt.Schema, body, "") {
			t.Errorf("%s: response %d has a field the document does not describe: %s", name, res.StatusCode, f)
		}
	}
	e.checkProblem(name, res, body)
}

// validateUnrouted checks a 404/405 answered for a path or method the document does not have
// against the NotRouted/MethodNotAllowed component responses.
func (e *oapiEnv) validateUnrouted(name string, res *http.Response, raw []byte) {
	t := e.t
	t.Helper()
	comp := map[int]string{http.StatusNotFound: "NotRouted", http.StatusMethodNotAllowed: "MethodNotAllowed"}[res.StatusCode]
	ref := e.doc.Components.Responses[comp]
	if ref == nil {
		t.Errorf("%s: unrouted request answered %d, which no component response describes", name, res.StatusCode)
		return
	}
	e.seen[fmt.Sprintf("unrouted %d", res.StatusCode)] = true
	for h, hr := range ref.Value.Headers {
		if hr.Value.Required && res.Header.Get(h) == "" {
			t.Errorf("%s: header %s missing", name, h)
		}
	}
	mt := ref.Value.Content.Get(res.Header.Get("Content-Type"))
	if mt == nil {
		t.Errorf("%s: content type %q not documented", name, res.Header.Get("Content-Type"))
		return
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
		t.Errorf("%s: body does not match %s: %v", name, comp, err)
	}
	body, _ := v.(map[string]any)
	for _, f := range undocumentedFields(mt.Schema, v, "") {
		t.Errorf("%s: field the document does not describe: %s", name, f)
	}
	e.checkProblem(name, res, body)
}

// checkProblem checks what the schema cannot: a problem's members agree with the response.
func (e *oapiEnv) checkProblem(name string, res *http.Response, body map[string]any) {
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") {
		return
	}
	code, _ := body["code"].(string)
	if st, _ := body["status"].(float64); int(st) != res.StatusCode {
		e.t.Errorf("%s: problem status %v, HTTP status %d", name, body["status"], res.StatusCode)
	}
	if typ, _ := body["type"].(string); typ != "urn:otpd:problem:"+code {
		e.t.Errorf("%s: problem type %q for code %q", name, typ, code)
	}
	if title, _ := body["title"].(string); title != http.StatusText(res.StatusCode) {
		e.t.Errorf("%s: problem title %q", name, title)
	}
}

// pathParams reads the {params} of tpl out of path.
func pathParams(tpl, path string) map[string]string {
	out := map[string]string{}
	ts, ps := strings.Split(tpl, "/"), strings.Split(path, "/")
	for i, s := range ts {
		if i < len(ps) && strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			v, _ := url.PathUnescape(ps[i])
			out[strings.Trim(s, "{}")] = v
		}
	}
	return out
}

// undocumentedFields lists the members of v (at any depth) that its schema does not name. The
// published schemas leave room for new members; this keeps today's responses fully described.
func undocumentedFields(ref *openapi3.SchemaRef, v any, at string) []string {
	if ref == nil || ref.Value == nil {
		return nil
	}
	props := map[string]*openapi3.SchemaRef{}
	var items []*openapi3.SchemaRef
	var collect func(s *openapi3.Schema)
	collect = func(s *openapi3.Schema) {
		for k, p := range s.Properties {
			if props[k] == nil {
				props[k] = p
			}
		}
		if s.Items != nil {
			items = append(items, s.Items)
		}
		for _, group := range [][]*openapi3.SchemaRef{s.AllOf, s.AnyOf, s.OneOf} {
			for _, sub := range group {
				if sub.Value != nil {
					collect(sub.Value)
				}
			}
		}
	}
	collect(ref.Value)
	var out []string
	switch v := v.(type) {
	case map[string]any:
		if len(props) == 0 {
			return nil // a free-form object
		}
		for k, x := range v {
			p := props[k]
			if p == nil {
				out = append(out, at+"/"+k)
				continue
			}
			out = append(out, undocumentedFields(p, x, at+"/"+k)...)
		}
	case []any:
		for i, x := range v {
			for _, it := range items {
				out = append(out, undocumentedFields(it, x, fmt.Sprintf("%s/%d", at, i))...)
			}
		}
	}
	slices.Sort(out)
	return out
}

func str(v any) string { s, _ := v.(string); return s }

func num(v any) int { f, _ := v.(float64); return int(f) }

// TestOpenAPIResponsesMatchServer drives every endpoint of a real server (engine over SQLite,
// outbox worker with the log provider) with valid and invalid requests and validates every
// response — status, headers, body — against the document. At the end every documented
// response of every operation must have been seen at least once.
func TestOpenAPIResponsesMatchServer(t *testing.T) {
	e := newOAPIEnv(t)
	A := e.admin
	big := `{"name":"` + strings.Repeat("x", maxBody) + `"}`
	textPlain := map[string]string{"Content-Type": "text/plain"}

	// Operational endpoints.
	e.do(oapiCall{method: "GET", path: "/healthz", status: 200})
	e.do(oapiCall{method: "GET", path: "/readyz", status: 200})
	e.do(oapiCall{method: "GET", path: "/metrics", status: 200})
	e.do(oapiCall{method: "GET", path: "/v1/openapi.json", status: 200})
	// Not routed: unknown path, known path with another method.
	e.do(oapiCall{method: "GET", path: "/v1/nothing-here", key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "DELETE", path: "/v1/verifications", key: A, status: 405, code: "method_not_allowed"})

	// Authentication: every authenticated operation refuses a missing, unknown or foreign-scheme key.
	for name, op := range documentedOps(e.doc) {
		if op.Security != nil && len(*op.Security) == 0 {
			continue
		}
		method, path, _ := strings.Cut(name, " ")
		e.do(oapiCall{method: method, path: samplePath(path), status: 401, code: "unauthorized"})
	}
	e.do(oapiCall{method: "GET", path: "/v1/verifications", key: "otpd_nope_nope", status: 401, code: "unauthorized"})
	e.do(oapiCall{method: "GET", path: "/v1/verifications", status: 401, code: "unauthorized",
		header: map[string]string{"Authorization": "Basic " + A, "x-api-key": A}})
	e.do(oapiCall{method: "GET", path: "/v1/verifications", status: 200, header: map[string]string{"x-api-key": A}})

	// ---- start ----
	none := e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 201,
		body: `{"channel":"none","to":"+1 (415) 555-0100","code_length":8,"ttl_seconds":120,"max_attempts":3,"purpose":"login:2fa","client_ip":"203.0.113.9","locale":"en"}`})
	noneID := str(none["id"])
	if len(str(none["code"])) != 8 || none["delivery"] != nil || none["to"] != "+14155550100" {
		t.Errorf("start none: %v", none)
	}
	mail := e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 201,
		body: `{"channel":"email","to":"Alice@Example.com"}`})
	mailID := str(mail["id"])
	if mail["code"] != nil || mail["delivery"] != "queued" || num(mail["attempts_left"]) != 5 || num(mail["sends_left"]) != 4 {
		t.Errorf("start email: %v", mail)
	}
	voice := e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 201,
		body: `{"channel":"voice","to":"+442071838750"}`})
	idem := map[string]string{"Idempotency-Key": "order-42"}
	first := e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 201, header: idem,
		body: `{"channel":"none","to":"bob@example.com"}`})
	replay := e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 200, header: idem,
		body: `{"channel":"none","to":"bob@example.com"}`})
	if replay["id"] != first["id"] || replay["code"] != nil {
		t.Errorf("replay: %v (first %v)", replay, first)
	}
	e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 422, code: "idempotency_mismatch",
		header: idem, body: `{"channel":"none","to":"carol@example.com"}`})
	e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 422, code: "channel_unavailable",
		body: `{"channel":"whatsapp","to":"+14155550100"}`})
	e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 400, code: "invalid_request",
		header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}, req: reqInvalid,
		body: `{"channel":"none","to":"dave@example.com"}`})
	for _, b := range []string{
		`{"channel":"fax","to":"+14155550100"}`,
		`{"to":"+14155550100"}`,
		`{"channel":"none","to":""}`,
		`{"channel":"none","to":"x","code_length":5}`,
		`{"channel":"none","to":"x","code_length":11}`,
		`{"channel":"none","to":"x","ttl_seconds":29}`,
		`{"channel":"none","to":"x","ttl_seconds":601}`,
		`{"channel":"none","to":"x","max_attempts":11}`,
		`{"channel":"none","to":"x","max_attempts":-1}`,
		`{"channel":"none","to":"x","purpose":"no spaces"}`,
		`{"channel":"none","to":"x","purpose":"` + strings.Repeat("p", 65) + `"}`,
	} {
		e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 400, code: "invalid_request", body: b, req: reqInvalid})
	}
	for _, b := range []string{ // the server's rules here go beyond what a schema says
		`{"channel":"email","to":"not an address"}`,
		`{"channel":"sms","to":"4155550100"}`,
		`{"channel":"none","to":"x","client_ip":"300.1.1.1"}`,
	} {
		e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 400, code: "invalid_request", body: b, req: reqSkip})
	}
	for _, b := range []string{
		`{"channel":"none","to":"x","extra":1}`,
		`{"channel":"none","to":"x","code_length":"6"}`,
		`{"channel":"none","to":"x","code_length":6.5}`,
		`["channel"]`,
		`{"channel":"none"`,
		`nonsense`,
	} {
		e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 400, code: "invalid_json", body: b, req: reqInvalid})
	}
	e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 400, code: "invalid_json",
		body: `{"channel":"none","to":"x"} {}`, req: reqSkip})
	e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 400, code: "invalid_json", req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 415, code: "unsupported_media_type",
		header: textPlain, body: `{"channel":"none","to":"x"}`, req: reqInvalid})
	// The per-recipient limit (5 per 10 minutes by default) answers 429 with Retry-After.
	for range 5 {
		e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 201, body: `{"channel":"none","to":"limit@example.com"}`})
	}
	e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 429, code: "rate_limited",
		body: `{"channel":"none","to":"LIMIT@example.com"}`})

	// ---- delivery and the dev inbox ----
	e.deliver()
	if v := e.do(oapiCall{method: "GET", path: "/v1/verifications/" + mailID, key: A, status: 200}); v["delivery"] != "sent" {
		t.Errorf("email delivery after the worker ran: %v", v["delivery"])
	}
	if v := e.do(oapiCall{method: "GET", path: "/v1/verifications/" + str(voice["id"]), key: A, status: 200}); v["delivery"] != "failed" || v["status"] != "pending" {
		t.Errorf("refused voice message: %v", v)
	}
	inbox := e.do(oapiCall{method: "GET", path: "/v1/dev/messages?to=alice@example.com", key: A, status: 200})
	if msgs, _ := inbox["messages"].([]any); len(msgs) != 1 {
		t.Errorf("dev inbox for alice: %v", inbox)
	}
	e.do(oapiCall{method: "GET", path: "/v1/dev/messages", key: A, status: 200})
	if l := e.do(oapiCall{method: "GET", path: "/v1/dev/messages?limit=1", key: A, status: 200}); len(l["messages"].([]any)) != 1 {
		t.Errorf("dev inbox limit=1: %v", l)
	}
	e.do(oapiCall{method: "GET", path: "/v1/dev/messages?limit=0", key: A, status: 400, code: "invalid_request", req: reqInvalid})

	// ---- get, list ----
	e.do(oapiCall{method: "GET", path: "/v1/verifications/" + noneID, key: A, status: 200})
	e.do(oapiCall{method: "GET", path: "/v1/verifications/0190b1c2-0000-7000-8000-000000000000", key: A, status: 404, code: "not_found"})
	page := e.do(oapiCall{method: "GET", path: "/v1/verifications?limit=2", key: A, status: 200})
	cursor := str(page["next_cursor"])
	if cursor == "" {
		t.Fatalf("full page without next_cursor: %v", page)
	}
	e.do(oapiCall{method: "GET", path: "/v1/verifications?limit=2&cursor=" + url.QueryEscape(cursor), key: A, status: 200})
	e.do(oapiCall{method: "GET", path: "/v1/verifications?status=pending&channel=none&to=%2B14155550100&from=2026-11-24T00:00:00Z&to_time=2026-11-25T00:00:00Z&limit=500", key: A, status: 200})
	for _, q := range []string{"status=done", "channel=fax", "limit=0", "limit=501", "limit=ten"} {
		e.do(oapiCall{method: "GET", path: "/v1/verifications?" + q, key: A, status: 400, code: "invalid_request", req: reqInvalid})
	}
	for _, q := range []string{"from=yesterday", "to_time=2026-11-24", "cursor=%21%21"} {
		e.do(oapiCall{method: "GET", path: "/v1/verifications?" + q, key: A, status: 400, code: "invalid_request", req: reqSkip})
	}

	// ---- check ----
	chk := "/v1/verifications/" + noneID + "/check"
	e.do(oapiCall{method: "POST", path: chk, key: A, status: 400, code: "malformed_code", body: `{"code":"12ab5678"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: chk, key: A, status: 400, code: "malformed_code", body: `{"code":""}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: chk, key: A, status: 400, code: "malformed_code", body: `{"code":"123456"}`, req: reqSkip}) // 8-digit session
	e.do(oapiCall{method: "POST", path: chk, key: A, status: 400, code: "invalid_json", body: `{"code":12345678}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: chk, key: A, status: 400, code: "invalid_json", body: `{"code":"12345678","try":1}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: chk, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: chk, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{"code":"12345678"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/verifications/0190b1c2-0000-7000-8000-000000000000/check", key: A, status: 404, code: "not_found", body: `{"code":"12345678"}`})
	wrong := "00000000"
	if str(none["code"]) == wrong {
		wrong = "11111111"
	}
	if r := e.do(oapiCall{method: "POST", path: chk, key: A, status: 200, body: `{"code":"` + wrong + `"}`}); r["valid"] != false || num(r["attempts_left"]) != 2 {
		t.Errorf("wrong code: %v", r)
	}
	if r := e.do(oapiCall{method: "POST", path: chk, key: A, status: 200, body: `{"code":"` + str(none["code"]) + `"}`}); r["valid"] != true || r["status"] != "verified" {
		t.Errorf("right code: %v", r)
	}
	if r := e.do(oapiCall{method: "POST", path: chk, key: A, status: 200, body: `{"code":"` + str(none["code"]) + `"}`}); r["valid"] != false || r["status"] != "verified" {
		t.Errorf("right code again: %v", r)
	}
	if v := e.do(oapiCall{method: "GET", path: "/v1/verifications/" + noneID, key: A, status: 200}); v["finished_at"] == nil || num(v["attempts_left"]) != 0 {
		t.Errorf("verified session: %v", v)
	}
	// A try budget of 1: the wrong code fails the session.
	one := e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 201, body: `{"channel":"none","to":"erin@example.com","max_attempts":1}`})
	wrong = "000000"
	if str(one["code"]) == wrong {
		wrong = "111111"
	}
	if r := e.do(oapiCall{method: "POST", path: "/v1/verifications/" + str(one["id"]) + "/check", key: A, status: 200, body: `{"code":"` + wrong + `"}`}); r["status"] != "failed" {
		t.Errorf("last try: %v", r)
	}

	// ---- resend, cancel ----
	rs := e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 201, body: `{"channel":"none","to":"frank@example.com","max_attempts":4}`})
	rsPath := "/v1/verifications/" + str(rs["id"]) + "/resend"
	e.do(oapiCall{method: "POST", path: rsPath, key: A, status: 429, code: "rate_limited"}) // cooldown
	e.do(oapiCall{method: "POST", path: rsPath, key: A, status: 400, code: "invalid_json", body: `{"channel":"sms"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: rsPath, key: A, status: 400, code: "invalid_json", body: `[]`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: rsPath, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: rsPath, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/verifications/0190b1c2-0000-7000-8000-000000000000/resend", key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "POST", path: "/v1/verifications/" + str(rs["id"]) + "/check", key: A, status: 200, body: `{"code":"` + otherCode(str(rs["code"])) + `"}`})
	for i := range 4 {
		e.clk.Advance(31 * time.Second)
		body := ""
		if i%2 == 1 {
			body = `{}`
		}
		r := e.do(oapiCall{method: "POST", path: rsPath, key: A, status: 200, body: body})
		if len(str(r["code"])) != 6 || r["code"] == rs["code"] || num(r["attempts_left"]) != 3 || num(r["sends_left"]) != 3-i {
			t.Errorf("resend %d: %v", i+1, r)
		}
	}
	e.clk.Advance(31 * time.Second)
	e.do(oapiCall{method: "POST", path: rsPath, key: A, status: 429, code: "max_sends"})
	cancel := "/v1/verifications/" + str(rs["id"]) + "/cancel"
	e.do(oapiCall{method: "POST", path: cancel, key: A, status: 400, code: "invalid_json", body: `{"reason":"x"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: cancel, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: cancel, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	if v := e.do(oapiCall{method: "POST", path: cancel, key: A, status: 200}); v["status"] != "canceled" || v["finished_at"] == nil {
		t.Errorf("cancel: %v", v)
	}
	if p := e.do(oapiCall{method: "POST", path: cancel, key: A, status: 409, code: "session_finished", body: `{}`}); p["session_status"] != "canceled" {
		t.Errorf("cancel twice: %v", p)
	}
	if p := e.do(oapiCall{method: "POST", path: rsPath, key: A, status: 409, code: "session_finished"}); p["session_status"] != "canceled" {
		t.Errorf("resend canceled: %v", p)
	}
	e.do(oapiCall{method: "POST", path: "/v1/verifications/0190b1c2-0000-7000-8000-000000000000/cancel", key: A, status: 404, code: "not_found"})
	// Lazy expiry: past its lifetime a pending session reads as expired and says so.
	exp := e.do(oapiCall{method: "POST", path: "/v1/verifications", key: A, status: 201, body: `{"channel":"none","to":"gina@example.com","ttl_seconds":30}`})
	e.clk.Advance(31 * time.Second)
	if v := e.do(oapiCall{method: "GET", path: "/v1/verifications/" + str(exp["id"]), key: A, status: 200}); v["status"] != "expired" || v["finished_at"] != v["expires_at"] {
		t.Errorf("expired: %v", v)
	}
	if p := e.do(oapiCall{method: "POST", path: "/v1/verifications/" + str(exp["id"]) + "/cancel", key: A, status: 409, code: "session_finished"}); p["session_status"] != "expired" {
		t.Errorf("cancel expired: %v", p)
	}
	e.do(oapiCall{method: "GET", path: "/v1/verifications?status=expired", key: A, status: 200})

	// ---- applications ----
	app := e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 201, body: `{"name":"shop backend"}`})
	appKey := str(app["api_key"])
	if appKey == "" || str(app["client_secret"]) == "" {
		t.Fatalf("new application without secrets: %v", app)
	}
	e.do(oapiCall{method: "GET", path: "/v1/applications", key: A, status: 200})
	e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 400, code: "invalid_request", body: `{"name":""}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 400, code: "invalid_request", body: `{}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 400, code: "invalid_json", body: `{"name":"x","role":"admin"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: "/v1/applications", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{"name":"x"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/applications", key: appKey, status: 403, code: "forbidden", body: `{"name":"x"}`})
	e.do(oapiCall{method: "GET", path: "/v1/applications", key: appKey, status: 403, code: "forbidden"})
	e.do(oapiCall{method: "DELETE", path: "/v1/applications/" + str(app["id"]), key: appKey, status: 403, code: "forbidden"})
	// An app key may use verifications, users and the dev inbox.
	e.do(oapiCall{method: "POST", path: "/v1/verifications", key: appKey, status: 201, body: `{"channel":"sms","to":"+4915112345678"}`})
	e.do(oapiCall{method: "GET", path: "/v1/dev/messages", key: appKey, status: 200})
	e.do(oapiCall{method: "DELETE", path: "/v1/applications/" + str(app["id"]), key: A, status: 204})
	e.do(oapiCall{method: "DELETE", path: "/v1/applications/" + str(app["id"]), key: A, status: 404, code: "not_found"})
	e.do(oapiCall{method: "GET", path: "/v1/verifications", key: appKey, status: 401, code: "unauthorized"})

	// ---- users ----
	u := e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 201,
		body: `{"login":"alice","email":"Alice@Example.com","phone":"+1 415 555 0100","external_id":"crm-1","first_name":"Alice","last_name":"Liddell","language":"en-GB","role":"staff","enabled":true}`})
	uPath := "/v1/users/" + str(u["id"])
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 201, body: `{"login":"bob","email":null}`})
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 409, code: "conflict", body: `{"login":"alice"}`})
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 400, code: "invalid_request", body: `{"email":"x@example.com"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 400, code: "invalid_request", body: `{"login":"x","language":"` + strings.Repeat("l", 17) + `"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 400, code: "invalid_request", body: `{"login":"x","email":"nope"}`, req: reqSkip})
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 400, code: "invalid_json", body: `{"login":"x","admin":true}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 400, code: "invalid_json", body: `{"login":"x","enabled":"yes"}`, req: reqInvalid})
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "POST", path: "/v1/users", key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{"login":"x"}`, req: reqInvalid})
	e.do(oapiCall{method: "GET", path: uPath, key: A, status: 200})
	e.do(oapiCall{method: "GET", path: "/v1/users/0190b1c2-0000-7000-8000-000000000000", key: appKey, status: 401, code: "unauthorized"})
	e.do(oapiCall{method: "GET", path: "/v1/users/0190b1c2-0000-7000-8000-000000000000", key: A, status: 404, code: "not_found"})
	if v := e.do(oapiCall{method: "PATCH", path: uPath, key: A, status: 200, body: `{"phone":"","enabled":false,"first_name":null}`}); v["phone"] != "" || v["enabled"] != false || v["first_name"] != "Alice" {
		t.Errorf("patch: %v", v)
	}
	e.do(oapiCall{method: "PATCH", path: uPath, key: A, status: 409, code: "conflict", body: `{"login":"bob"}`})
	e.do(oapiCall{method: "PATCH", path: uPath, key: A, status: 400, code: "invalid_request", body: `{"login":""}`, req: reqInvalid})
	e.do(oapiCall{method: "PATCH", path: uPath, key: A, status: 400, code: "invalid_json", body: `{"id":"x"}`, req: reqInvalid})
	e.do(oapiCall{method: "PATCH", path: uPath, key: A, status: 413, code: "body_too_large", body: big, req: reqSkip})
	e.do(oapiCall{method: "PATCH", path: uPath, key: A, status: 415, code: "unsupported_media_type", header: textPlain, body: `{}`, req: reqInvalid})
	e.do(oapiCall{method: "PATCH", path: "/v1/users/0190b1c2-0000-7000-8000-000000000000", key: A, status: 404, code: "not_found", body: `{"role":"x"}`})
	users := e.do(oapiCall{method: "GET", path: "/v1/users?limit=1", key: A, status: 200})
	e.do(oapiCall{method: "GET", path: "/v1/users?limit=1&cursor=" + url.QueryEscape(str(users["next_cursor"])), key: A, status: 200})
	e.do(oapiCall{method: "GET", path: "/v1/users", key: A, status: 200})
	e.do(oapiCall{method: "GET", path: "/v1/users?limit=0", key: A, status: 400, code: "invalid_request", req: reqInvalid})
	e.do(oapiCall{method: "GET", path: "/v1/users?cursor=%25", key: A, status: 400, code: "invalid_request", req: reqSkip})
	e.do(oapiCall{method: "DELETE", path: uPath, key: A, status: 204})
	e.do(oapiCall{method: "DELETE", path: uPath, key: A, status: 404, code: "not_found"})

	// ---- each surface's endpoints, driven by its own test file (see oapiSurfaces) ----
	for _, drive := range oapiSurfaces {
		drive(e)
	}

	// ---- the database goes away: readiness fails, every API call is a 500 problem ----
	e.close()
	e.do(oapiCall{method: "GET", path: "/readyz", status: 503, code: "not_ready"})
	e.do(oapiCall{method: "GET", path: "/healthz", status: 200})
	for name, op := range documentedOps(e.doc) {
		if op.Security != nil && len(*op.Security) == 0 {
			continue
		}
		method, path, _ := strings.Cut(name, " ")
		body := ""
		if op.RequestBody != nil {
			body = `{}`
		}
		e.do(oapiCall{method: method, path: samplePath(path), key: A, body: body, status: 500, code: "internal", req: reqSkip})
	}

	// Every documented response was seen, except those no request can provoke on demand.
	unprovoked := map[string]bool{
		// a check loses its conditional update three times in a row only under heavy contention
		"POST /v1/verifications/{id}/check 409": true,
	}
	for name, op := range documentedOps(e.doc) {
		for status := range op.Responses.Map() {
			k := name + " " + status
			if !e.seen[k] && !unprovoked[k] {
				t.Errorf("documented response %s was never answered in this test", k)
			}
		}
	}
	for _, k := range []string{"unrouted 404", "unrouted 405"} {
		if !e.seen[k] {
			t.Errorf("%s not exercised", k)
		}
	}
	for _, c := range e.doc.Components.Schemas["Problem"].Value.Properties["code"].Value.Enum {
		if !e.codes[c.(string)] {
			t.Errorf("problem code %q is documented but was never answered", c)
		}
	}
}

// oapiSurfaces drive a surface's /v1 endpoints in TestOpenAPIResponsesMatchServer, before the
// database goes away; each surface's test file adds its driver in an init function.
var oapiSurfaces []func(e *oapiEnv)

// otherCode returns a code of the same length that differs from code.
func otherCode(code string) string {
	w := strings.Repeat("0", len(code))
	if w == code {
		w = strings.Repeat("1", len(code))
	}
	return w
}
