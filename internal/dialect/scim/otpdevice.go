package scim

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/otpauth"
	"github.com/otpd/otpd/internal/store"
)

func contextWithPrefix(ctx context.Context, p string) context.Context {
	return context.WithValue(ctx, prefixKey{}, p)
}

func prefixOf(ctx context.Context) string {
	p, _ := ctx.Value(prefixKey{}).(string)
	return p
}

// dateFormat is how the seed writes dates ("2021-10-14 06:44:43"), in UTC.
const dateFormat = "2006-01-02 15:04:05"

// otpDevice is the OtpDevice resource as the seed shows it.
type otpDevice struct {
	Image    string     `json:"image,omitempty"`
	URI      string     `json:"uri,omitempty"`
	LastUsed string     `json:"lastUsed,omitempty"`
	Created  string     `json:"created"`
	Meta     deviceMeta `json:"meta"`
	Schemas  []string   `json:"schemas"`
	Phone    string     `json:"phone,omitempty"`
	Name     string     `json:"name"`
	ID       int64      `json:"id"`
	Type     string     `json:"type"`
	User     string     `json:"user"`
	Fails    int        `json:"fails"`
	Email    string     `json:"email,omitempty"`
	Status   string     `json:"status"`
}

type deviceMeta struct {
	Location     string       `json:"location"`
	Links        *deviceLinks `json:"links,omitempty"`
	ResourceType string       `json:"resourceType"`
}

type deviceLinks struct {
	RequestChallenge  string `json:"requestChallenge"`
	ResponseChallenge string `json:"responseChallenge"`
}

func toDevice(r *http.Request, d *engine.Device, links bool) otpDevice {
	loc := baseURL(r) + "/OtpDevice/" + strconv.FormatInt(d.Number, 10)
	out := otpDevice{
		Created: d.CreatedAt.UTC().Format(dateFormat),
		Meta:    deviceMeta{Location: loc, ResourceType: "OtpDevice"},
		Schemas: []string{SchemaOtpDevice},
		Phone:   d.Phone, Name: d.Name, ID: d.Number, Type: d.Type, User: d.UserLogin,
		Fails: d.Fails, Email: d.Email, Status: d.State,
	}
	if d.LastUsedAt != nil {
		out.LastUsed = d.LastUsedAt.UTC().Format(dateFormat)
	}
	if links {
		out.Meta.Links = &deviceLinks{RequestChallenge: loc + "/requestChallenge", ResponseChallenge: loc + "/responseChallenge"}
	}
	return out
}

// deviceRef reads the numeric id of the path.
func deviceRef(r *http.Request) (engine.DeviceRef, error) {
	n, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || n <= 0 {
		return engine.DeviceRef{}, engine.ErrNotFound
	}
	return engine.DeviceRef{Number: n}, nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := queryParams(r)
	if err != nil {
		return err
	}
	return s.queryDevices(w, r, p, q)
}

func (s *Server) searchDevices(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := searchParams(w, r)
	if err != nil {
		return err
	}
	return s.queryDevices(w, r, p, q)
}

func (s *Server) queryDevices(w http.ResponseWriter, r *http.Request, p engine.Principal, q listQuery) error {
	var dq store.DeviceQuery
	if q.filter != "" {
		f, err := parseFilter(deviceResource, q.filter)
		if err != nil {
			return err
		}
		dq.Filter = f
	}
	sort, err := parseSort(deviceResource, q.sortBy, q.sortOrder)
	if err != nil {
		return err
	}
	dq.Sort, dq.Offset, dq.Limit = sort, q.startIndex-1, q.count
	ds, total, err := s.eng.QueryDevices(r.Context(), p, dq)
	if err != nil {
		return err
	}
	items := make([]any, len(ds))
	for i := range ds {
		items[i] = toDevice(r, &ds[i], true)
	}
	writeJSON(w, http.StatusOK, newList(total, q, items))
	return nil
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	ref, err := deviceRef(r)
	if err != nil {
		return err
	}
	d, err := s.eng.GetDevice(r.Context(), p, ref)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toDevice(r, d, true))
	return nil
}

// deviceBody is an OtpDevice in a POST or PUT. Read-only attributes a client echoes back (id,
// meta, created, …) are accepted and ignored; pin and secret are write-only.
type deviceBody struct {
	Schemas  []string        `json:"schemas"`
	Meta     json.RawMessage `json:"meta"`
	ID       json.RawMessage `json:"id"`
	Created  json.RawMessage `json:"created"`
	LastUsed json.RawMessage `json:"lastUsed"`
	Fails    json.RawMessage `json:"fails"`
	Image    json.RawMessage `json:"image"`
	URI      json.RawMessage `json:"uri"`

	Type   *string `json:"type"`
	User   *string `json:"user"`
	Name   *string `json:"name"`
	Status *string `json:"status"`
	Phone  *string `json:"phone"`
	Email  *string `json:"email"`
	PIN    *string `json:"pin"`
	// Secret imports a TOTP/HOTP seed (base32). An imported seed is never shown again.
	Secret *string `json:"secret"`
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (s *Server) createDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var b deviceBody
	if err := decode(w, r, &b, true); err != nil {
		return err
	}
	if b.Type == nil || b.User == nil || *b.User == "" {
		return &scimError{status: 400, scimType: "invalidValue", detail: "type and user are required"}
	}
	typ := strings.ToUpper(*b.Type)
	req := engine.EnrollRequest{User: engine.UserRef{Login: *b.User}, Type: typ, Name: str(b.Name),
		Phone: str(b.Phone), Email: str(b.Email), PIN: str(b.PIN)}
	// The seed's PIN example carries the PIN in "email"; read it so.
	if typ == store.DevicePIN && b.PIN == nil && b.Email != nil {
		req.PIN, req.Email = *b.Email, ""
	}
	if b.Secret != nil {
		seed, err := otpauth.DecodeSecret(*b.Secret)
		if err != nil {
			return &scimError{status: 400, scimType: "invalidValue", detail: "secret must be a base32 seed"}
		}
		req.Secret = seed
	}
	if b.Status != nil && *b.Status != store.DeviceCreated {
		return &scimError{status: 400, scimType: "mutability", detail: "a new device starts in status C; change it afterwards"}
	}
	en, err := s.eng.EnrollDevice(r.Context(), p, req)
	if errors.Is(err, engine.ErrNotFound) {
		return &scimError{status: 400, scimType: "invalidValue", detail: "user: no user with that userName"}
	}
	if err != nil {
		return err
	}
	out := toDevice(r, en.Device, false) // the seed's create answer has no links
	if en.URI != "" {
		out.URI = en.URI
		out.Image = base64.StdEncoding.EncodeToString(en.QR)
	}
	w.Header().Set("Location", out.Meta.Location)
	writeJSON(w, http.StatusOK, out) // the seed answers a create with 200
	return nil
}

// putDevice replaces the mutable attributes given (name, status, phone, email, pin); type and
// user cannot change.
func (s *Server) putDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	ref, err := deviceRef(r)
	if err != nil {
		return err
	}
	var b deviceBody
	if err := decode(w, r, &b, true); err != nil {
		return err
	}
	cur, err := s.eng.GetDevice(r.Context(), p, ref)
	if err != nil {
		return err
	}
	if (b.Type != nil && !strings.EqualFold(*b.Type, cur.Type)) || (b.User != nil && *b.User != cur.UserLogin) {
		return &scimError{status: 400, scimType: "mutability", detail: "type and user cannot change"}
	}
	if b.Secret != nil {
		return &scimError{status: 400, scimType: "mutability", detail: "a seed cannot be replaced; enrol a new device"}
	}
	c := engine.DeviceChanges{Name: b.Name, Status: b.Status, Phone: b.Phone, Email: b.Email, PIN: b.PIN}
	if b.Status != nil && *b.Status == cur.State {
		c.Status = nil // unchanged: do not clear a lock's history by re-stating it
	}
	return s.applyDevice(w, r, p, ref, c)
}

func (s *Server) applyDevice(w http.ResponseWriter, r *http.Request, p engine.Principal, ref engine.DeviceRef, c engine.DeviceChanges) error {
	if c.Status != nil {
		up := strings.ToUpper(*c.Status)
		c.Status = &up
	}
	d, err := s.eng.UpdateDevice(r.Context(), p, ref, c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toDevice(r, d, true))
	return nil
}

// patchOp is an RFC 7644 §3.5.2 PATCH request; the seed sends it without "schemas".
type patchOp struct {
	Schemas    []string `json:"schemas"`
	Operations []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	} `json:"Operations"`
}

func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	ref, err := deviceRef(r)
	if err != nil {
		return err
	}
	var b patchOp
	if err := decode(w, r, &b, true); err != nil {
		return err
	}
	if len(b.Operations) == 0 {
		return &scimError{status: 400, scimType: "invalidValue", detail: "Operations is empty"}
	}
	var c engine.DeviceChanges
	for _, op := range b.Operations {
		kind := strings.ToLower(op.Op)
		if kind != "add" && kind != "replace" && kind != "remove" {
			return &scimError{status: 400, scimType: "invalidSyntax", detail: "op must be add, replace or remove"}
		}
		values := map[string]json.RawMessage{}
		if op.Path == "" {
			if kind == "remove" {
				return &scimError{status: 400, scimType: "noTarget", detail: "remove needs a path"}
			}
			if err := json.Unmarshal(op.Value, &values); err != nil {
				return &scimError{status: 400, scimType: "invalidValue", detail: "without a path, value must be an object of attributes"}
			}
		} else {
			values[op.Path] = op.Value
		}
		for path, raw := range values {
			attr := strings.ToLower(strings.TrimPrefix(strings.ToLower(path), strings.ToLower(SchemaOtpDevice)+":"))
			var dst **string
			switch attr {
			case "name":
				dst = &c.Name
			case "status":
				dst = &c.Status
			case "phone":
				dst = &c.Phone
			case "email":
				dst = &c.Email
			case "pin":
				dst = &c.PIN
			case "id", "type", "user", "fails", "created", "lastused", "meta", "schemas", "secret", "image", "uri":
				return &scimError{status: 400, scimType: "mutability", detail: path + " cannot be changed"}
			default:
				return &scimError{status: 400, scimType: "invalidPath", detail: path + " is not an attribute of OtpDevice"}
			}
			if kind == "remove" {
				return &scimError{status: 400, scimType: "mutability", detail: path + " is required and cannot be removed"}
			}
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				return &scimError{status: 400, scimType: "invalidValue", detail: path + " must be a string"}
			}
			*dst = &v
		}
	}
	return s.applyDevice(w, r, p, ref, c)
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	ref, err := deviceRef(r)
	if err != nil {
		return err
	}
	if err := s.eng.DeleteDevice(r.Context(), p, ref); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// requestChallenge sends an SMS/EMAIL device its code and answers {"cell": "PIN",
// "cardNumber": <masked target>}; for the other types nothing is sent.
func (s *Server) requestChallenge(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	ref, err := deviceRef(r)
	if err != nil {
		return err
	}
	ch, err := s.eng.ChallengeDevice(r.Context(), p, ref, "")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"cell": "PIN", "cardNumber": ch.Device.TargetLabel()})
	return nil
}

// responseChallenge checks {"pin"} and answers {"success", "locked"}. A code of the wrong shape
// is a plain failure, as in the seed (which posts an 8-digit pin and gets success false).
func (s *Server) responseChallenge(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	ref, err := deviceRef(r)
	if err != nil {
		return err
	}
	var b struct {
		PIN *string `json:"pin"`
	}
	if err := decode(w, r, &b, true); err != nil {
		return err
	}
	if b.PIN == nil {
		return &scimError{status: 400, scimType: "invalidValue", detail: "pin is required"}
	}
	res, err := s.eng.VerifyDevice(r.Context(), p, ref, *b.PIN)
	if errors.Is(err, engine.ErrMalformedCode) {
		d, gerr := s.eng.GetDevice(r.Context(), p, ref)
		if gerr != nil {
			return gerr
		}
		writeJSON(w, http.StatusOK, map[string]bool{"success": false, "locked": d.Locked()})
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]bool{"success": res.Success, "locked": res.Locked})
	return nil
}
