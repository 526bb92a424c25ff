// Package scim is the SCIM 2.0 dialect (RFC 7643/7644) as Soffid serves it for OTP devices
// (seed "soffid-scim-otp-devices.txt"): ServiceProviderConfig, ResourceTypes, Schemas, Users
// and the OtpDevice resource, under /scim2/v1/ and, for drop-in use, under
// /soffid/webservice/scim2/v1/.
//
// The package only translates: it decodes the wire format, turns SCIM filters into the store's
// filter trees over an attribute allow-list (filter.go), calls the engine, and answers in the
// seed's shapes or with the SCIM error schema. Where the seed differs from RFC 7644 the seed
// wins (a create answers 200, dates read "2021-10-14 06:44:43"); docs/scim.md lists the
// choices.
package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/otpd/otpd/internal/engine"
)

// Schema URNs.
const (
	SchemaOtpDevice     = "urn:soffid:com.soffid.iam.addons.otp.common.OtpDevice"
	SchemaUser          = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaListResponse  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaError         = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaPatchOp       = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaSearchRequest = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
	SchemaSPConfig      = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	SchemaResourceType  = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema        = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// Prefixes the dialect is served under.
var Prefixes = []string{"/scim2/v1", "/soffid/webservice/scim2/v1"}

// Paging bounds (ServiceProviderConfig filter.maxResults).
const (
	DefaultCount = 100
	MaxResults   = 1000
)

const maxBody = 64 << 10

// Mounter is where the dialect is served: the native API server.
type Mounter interface {
	Handle(pattern string, h http.Handler)
}

// Server is the SCIM dialect.
type Server struct {
	eng *engine.Engine
	log *slog.Logger
	mux *http.ServeMux
}

// Mount serves the dialect under both prefixes of m.
func Mount(m Mounter, eng *engine.Engine, log *slog.Logger) {
	s := New(eng, log)
	for _, p := range Prefixes {
		m.Handle(p+"/", http.StripPrefix(p, s.withPrefix(p)))
	}
}

// New returns the dialect's handler for paths without the prefix ("/OtpDevice/12").
func New(eng *engine.Engine, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{eng: eng, log: log, mux: http.NewServeMux()}
	routes := map[string]handler{
		"GET /ServiceProviderConfig":             s.serviceProviderConfig,
		"GET /ResourceTypes":                     s.resourceTypes,
		"GET /ResourceTypes/{name}":              s.resourceType,
		"GET /Schemas":                           s.schemas,
		"GET /Schemas/{id}":                      s.schema,
		"GET /OtpDevice":                         s.listDevices,
		"POST /OtpDevice/.search":                s.searchDevices,
		"POST /OtpDevice":                        s.createDevice,
		"GET /OtpDevice/{id}":                    s.getDevice,
		"PUT /OtpDevice/{id}":                    s.putDevice,
		"PATCH /OtpDevice/{id}":                  s.patchDevice,
		"DELETE /OtpDevice/{id}":                 s.deleteDevice,
		"GET /OtpDevice/{id}/requestChallenge":   s.requestChallenge,
		"POST /OtpDevice/{id}/responseChallenge": s.responseChallenge,
		"GET /Users":                             s.listUsers,
		"POST /Users/.search":                    s.searchUsers,
		"POST /Users":                            s.createUser,
		"GET /Users/{id}":                        s.getUser,
		"PUT /Users/{id}":                        s.putUser,
		"PATCH /Users/{id}":                      s.patchUser,
		"DELETE /Users/{id}":                     s.deleteUser,
	}
	for pattern, h := range routes {
		s.mux.Handle(pattern, s.endpoint(h))
	}
	return s
}

type prefixKey struct{}

// withPrefix remembers which prefix a request came in under, for meta.location.
func (s *Server) withPrefix(prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(contextWithPrefix(r.Context(), prefix))
		s.ServeHTTP(w, r)
	})
}

// ServeHTTP answers unknown paths and methods with the SCIM error schema.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		// Tell 404 from 405 the way the mux would, in SCIM's words.
		probe := &statusProbe{header: http.Header{}}
		s.mux.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.header.Get("Allow"))
			writeError(w, &scimError{status: 405, detail: "This endpoint does not accept " + r.Method + "."})
			return
		}
		writeError(w, &scimError{status: 404, detail: "No such SCIM endpoint."})
		return
	}
	s.mux.ServeHTTP(w, r)
}

type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header         { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *statusProbe) WriteHeader(code int)        { p.status = code }

type handler func(w http.ResponseWriter, r *http.Request, p engine.Principal) error

// endpoint authenticates, runs h, and turns its error into a SCIM error.
func (s *Server) endpoint(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err == nil {
			err = h(w, r, p)
		}
		if err != nil {
			e := toSCIMError(err)
			if e.status >= 500 {
				s.log.Error("scim request failed", "path", r.URL.Path, "err", err)
			}
			writeError(w, e)
		}
	})
}

// authenticate accepts HTTP Basic with an application's client id and secret (what Soffid's
// SCIM clients send) or a Bearer API key.
func (s *Server) authenticate(r *http.Request) (engine.Principal, error) {
	a := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(a, " ")
	switch {
	case strings.EqualFold(scheme, "Basic"):
		if id, secret, ok := r.BasicAuth(); ok {
			return s.eng.AuthenticateClient(r.Context(), id, secret)
		}
	case strings.EqualFold(scheme, "Bearer"):
		return s.eng.Authenticate(r.Context(), strings.TrimSpace(cred))
	}
	return engine.Principal{}, engine.ErrUnauthenticated
}

// scimError is an RFC 7644 §3.12 error.
type scimError struct {
	status   int
	scimType string
	detail   string
	cause    error
}

func (e *scimError) Error() string {
	if e.cause != nil {
		return e.detail + ": " + e.cause.Error()
	}
	return e.detail
}

// toSCIMError maps engine outcomes to SCIM errors.
func toSCIMError(err error) *scimError {
	var (
		se *scimError
		fe *filterError
		ve *engine.ValidationError
		vs engine.ValidationErrors
		rl *engine.RateLimitError
	)
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &fe):
		return &scimError{status: 400, scimType: "invalidFilter", detail: fe.msg}
	case errors.Is(err, engine.ErrInvalidFilter):
		return &scimError{status: 400, scimType: "invalidFilter", detail: strings.TrimPrefix(err.Error(), "invalid filter: ")}
	case errors.Is(err, engine.ErrCountryNotAllowed):
		// The device's number lies in a country the tenant does not send to: the value is the
		// problem, and waiting will not help.
		return &scimError{status: 400, scimType: "invalidValue", detail: "phone: codes may not be sent to this number's country (the tenant's allowed_countries)."}
	case errors.As(err, &vs) && len(vs) > 0:
		return &scimError{status: 400, scimType: "invalidValue", detail: scimField(vs[0].Field) + ": " + vs[0].Message}
	case errors.As(err, &ve):
		return &scimError{status: 400, scimType: "invalidValue", detail: scimField(ve.Field) + ": " + ve.Message}
	case errors.Is(err, engine.ErrMalformedCode):
		return &scimError{status: 400, scimType: "invalidValue", detail: "pin: " + strings.TrimPrefix(err.Error(), "malformed code: ")}
	case errors.Is(err, engine.ErrNotFound):
		return &scimError{status: 404, detail: "Resource not found."}
	case errors.Is(err, engine.ErrUnauthenticated):
		return &scimError{status: 401, detail: "Authenticate with HTTP Basic (client id and secret) or a Bearer API key."}
	case errors.Is(err, engine.ErrForbidden):
		return &scimError{status: 403, detail: "This credential may not do that."}
	case errors.Is(err, engine.ErrDeviceLocked):
		return &scimError{status: 409, detail: "The device is locked."}
	case errors.Is(err, engine.ErrDeviceDisabled):
		return &scimError{status: 409, detail: "The device is disabled."}
	case errors.As(err, &rl):
		return &scimError{status: 429, detail: "Too many codes sent; try again in " + strconv.Itoa(int(rl.RetryAfter.Seconds()+0.999)) + " s."}
	case errors.Is(err, engine.ErrMaxSends):
		return &scimError{status: 429, detail: "This challenge has used all its sends."}
	case errors.Is(err, engine.ErrChannelUnavailable):
		return &scimError{status: 503, detail: "No delivery provider is configured for this device's channel."}
	case errors.Is(err, engine.ErrConflict):
		return &scimError{status: 409, scimType: "uniqueness", detail: "A resource with that unique attribute exists, or it changed concurrently."}
	}
	return &scimError{status: 500, detail: "Something went wrong on our side; it has been logged.", cause: err}
}

// scimField names an engine field as the SCIM attribute it came from.
func scimField(f string) string {
	switch f {
	case "login":
		return "userName"
	case "external_id":
		return "externalId"
	case "first_name":
		return "name.givenName"
	case "last_name":
		return "name.familyName"
	case "language":
		return "preferredLanguage"
	case "phone":
		return "phone"
	}
	return f
}

func writeError(w http.ResponseWriter, e *scimError) {
	body := map[string]any{"schemas": []string{SchemaError}, "status": strconv.Itoa(e.status), "detail": e.detail}
	if e.scimType != "" {
		body["scimType"] = e.scimType
	}
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="otpd SCIM", Bearer realm="otpd SCIM"`)
	}
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/scim+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decode reads one JSON object into dst. strict refuses attributes dst does not know
// (invalidSyntax); lenient ignores them (Users: identity platforms send extension attributes).
func decode(w http.ResponseWriter, r *http.Request, dst any, strict bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		if mt != "application/json" && mt != "application/scim+json" {
			return &scimError{status: 415, detail: "Send the body as application/scim+json or application/json."}
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return &scimError{status: 413, detail: "The body is larger than 64 KiB."}
		}
		return &scimError{status: 400, scimType: "invalidSyntax", detail: "The body could not be read."}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return &scimError{status: 400, scimType: "invalidSyntax", detail: "The body must be a JSON object."}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(dst); err != nil {
		detail := "The body is not valid JSON for this resource."
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return &scimError{status: 400, scimType: "invalidValue", detail: "The attribute " + te.Field + " has the wrong type."}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			detail = "Unknown attribute " + strings.TrimPrefix(err.Error(), "json: unknown field ") + "."
		}
		return &scimError{status: 400, scimType: "invalidSyntax", detail: detail}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &scimError{status: 400, scimType: "invalidSyntax", detail: "Trailing data after the JSON object."}
	}
	return nil
}

// listQuery is a list request's paging, from the query string or a SearchRequest body.
type listQuery struct {
	filter, sortBy, sortOrder string
	startIndex, count         int
}

func queryParams(r *http.Request) (listQuery, error) {
	q := listQuery{startIndex: 1, count: DefaultCount}
	v := r.URL.Query()
	q.filter, q.sortBy, q.sortOrder = v.Get("filter"), v.Get("sortBy"), v.Get("sortOrder")
	for name, dst := range map[string]*int{"startIndex": &q.startIndex, "count": &q.count} {
		if s := v.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return q, &scimError{status: 400, scimType: "invalidValue", detail: name + " must be an integer"}
			}
			*dst = n
		}
	}
	return q.bounded(), nil
}

// searchBody is a POST …/.search request (RFC 7644 §3.4.3).
type searchBody struct {
	Schemas            []string `json:"schemas"`
	Filter             string   `json:"filter"`
	SortBy             string   `json:"sortBy"`
	SortOrder          string   `json:"sortOrder"`
	StartIndex         *int     `json:"startIndex"`
	Count              *int     `json:"count"`
	Attributes         []string `json:"attributes"`
	ExcludedAttributes []string `json:"excludedAttributes"`
}

func searchParams(w http.ResponseWriter, r *http.Request) (listQuery, error) {
	var b searchBody
	if err := decode(w, r, &b, true); err != nil {
		return listQuery{}, err
	}
	q := listQuery{filter: b.Filter, sortBy: b.SortBy, sortOrder: b.SortOrder, startIndex: 1, count: DefaultCount}
	if b.StartIndex != nil {
		q.startIndex = *b.StartIndex
	}
	if b.Count != nil {
		q.count = *b.Count
	}
	return q.bounded(), nil
}

// bounded applies RFC 7644 §3.4.2.4: a startIndex below 1 is 1, a negative count is 0, and a
// count above the maximum is the maximum.
func (q listQuery) bounded() listQuery {
	q.startIndex = max(q.startIndex, 1)
	q.count = min(max(q.count, 0), MaxResults)
	return q
}

// listResponse is an RFC 7644 ListResponse. itemsPerPage is sent only for a partial page, as
// the seed's full listings do not carry it.
type listResponse struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	ItemsPerPage *int     `json:"itemsPerPage,omitempty"`
	StartIndex   int      `json:"startIndex"`
	Resources    []any    `json:"Resources"`
}

func newList(total int, q listQuery, items []any) listResponse {
	l := listResponse{Schemas: []string{SchemaListResponse}, TotalResults: total, StartIndex: q.startIndex, Resources: items}
	if l.Resources == nil {
		l.Resources = []any{}
	}
	if len(items) < total {
		n := len(items)
		l.ItemsPerPage = &n
	}
	return l
}

// baseURL is the absolute URL of the prefix the request came in under, for meta.location.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + prefixOf(r.Context())
}
