package scim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
)

// scimUser is the RFC 7643 §4.1 core User, with the attributes otpd keeps.
type scimUser struct {
	Schemas           []string   `json:"schemas"`
	ID                string     `json:"id"`
	ExternalID        string     `json:"externalId,omitempty"`
	UserName          string     `json:"userName"`
	Name              *userName  `json:"name,omitempty"`
	Emails            []multiVal `json:"emails,omitempty"`
	PhoneNumbers      []multiVal `json:"phoneNumbers,omitempty"`
	PreferredLanguage string     `json:"preferredLanguage,omitempty"`
	Active            bool       `json:"active"`
	Meta              userMeta   `json:"meta"`
}

type userName struct {
	Formatted  string `json:"formatted,omitempty"`
	GivenName  string `json:"givenName,omitempty"`
	FamilyName string `json:"familyName,omitempty"`
}

type multiVal struct {
	Value   string `json:"value"`
	Type    string `json:"type,omitempty"`
	Primary bool   `json:"primary,omitempty"`
}

type userMeta struct {
	ResourceType string `json:"resourceType"`
	Created      string `json:"created"`
	LastModified string `json:"lastModified"`
	Location     string `json:"location"`
	Version      string `json:"version"`
}

func toUser(r *http.Request, u *store.User) scimUser {
	out := scimUser{Schemas: []string{SchemaUser}, ID: u.ID, ExternalID: u.ExternalID, UserName: u.Login,
		PreferredLanguage: u.Language, Active: u.Enabled,
		Meta: userMeta{ResourceType: "User", Created: u.CreatedAt.UTC().Format(time.RFC3339),
			LastModified: u.UpdatedAt.UTC().Format(time.RFC3339), Location: baseURL(r) + "/Users/" + u.ID,
			Version: `W/"` + strconv.FormatInt(u.Version, 10) + `"`}}
	if u.FirstName != "" || u.LastName != "" {
		out.Name = &userName{GivenName: u.FirstName, FamilyName: u.LastName,
			Formatted: strings.TrimSpace(u.FirstName + " " + u.LastName)}
	}
	if u.Email != "" {
		out.Emails = []multiVal{{Value: u.Email, Type: "work", Primary: true}}
	}
	if u.Phone != "" {
		out.PhoneNumbers = []multiVal{{Value: u.Phone, Type: "mobile", Primary: true}}
	}
	return out
}

// userBody is a User in a POST or PUT. Attributes otpd does not keep (other schemas'
// extensions, addresses, …) are ignored: identity platforms send many.
type userBody struct {
	UserName          *string    `json:"userName"`
	ExternalID        *string    `json:"externalId"`
	Name              *userName  `json:"name"`
	Emails            []multiVal `json:"emails"`
	PhoneNumbers      []multiVal `json:"phoneNumbers"`
	PreferredLanguage *string    `json:"preferredLanguage"`
	Active            *flexBool  `json:"active"`
}

// flexBool reads true/false and the strings "True"/"False" some identity platforms send.
type flexBool bool

func (b *flexBool) UnmarshalJSON(raw []byte) error {
	var v bool
	if err := json.Unmarshal(raw, &v); err == nil {
		*b = flexBool(v)
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	v, err := strconv.ParseBool(strings.ToLower(s))
	if err != nil {
		return err
	}
	*b = flexBool(v)
	return nil
}

// primary picks the primary value of a multi-valued attribute, else the first.
func primary(vs []multiVal) string {
	for _, v := range vs {
		if v.Primary {
			return v.Value
		}
	}
	if len(vs) > 0 {
		return vs[0].Value
	}
	return ""
}

// input turns the body into engine fields; with replace, absent attributes are cleared (PUT).
func (b userBody) input(replace bool) engine.UserInput {
	var in engine.UserInput
	set := func(dst **string, v *string) {
		if v != nil {
			*dst = v
		} else if replace {
			empty := ""
			*dst = &empty
		}
	}
	in.Login = b.UserName
	set(&in.ExternalID, b.ExternalID)
	set(&in.Language, b.PreferredLanguage)
	if b.Name != nil {
		in.FirstName, in.LastName = &b.Name.GivenName, &b.Name.FamilyName
	} else if replace {
		set(&in.FirstName, nil)
		set(&in.LastName, nil)
	}
	if b.Emails != nil || replace {
		e := primary(b.Emails)
		in.Email = &e
	}
	if b.PhoneNumbers != nil || replace {
		ph := primary(b.PhoneNumbers)
		in.Phone = &ph
	}
	if b.Active != nil {
		a := bool(*b.Active)
		in.Enabled = &a
	} else if replace {
		t := true
		in.Enabled = &t
	}
	return in
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := queryParams(r)
	if err != nil {
		return err
	}
	return s.queryUsers(w, r, p, q)
}

func (s *Server) searchUsers(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := searchParams(w, r)
	if err != nil {
		return err
	}
	return s.queryUsers(w, r, p, q)
}

func (s *Server) queryUsers(w http.ResponseWriter, r *http.Request, p engine.Principal, q listQuery) error {
	var uq store.UserQuery
	if q.filter != "" {
		f, err := parseFilter(userResource, q.filter)
		if err != nil {
			return err
		}
		uq.Filter = f
	}
	sort, err := parseSort(userResource, q.sortBy, q.sortOrder)
	if err != nil {
		return err
	}
	uq.Sort, uq.Offset, uq.Limit = sort, q.startIndex-1, q.count
	us, total, err := s.eng.QueryUsers(r.Context(), p, uq)
	if err != nil {
		return err
	}
	items := make([]any, len(us))
	for i := range us {
		items[i] = toUser(r, &us[i])
	}
	writeJSON(w, http.StatusOK, newList(total, q, items))
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	u, err := s.eng.GetUser(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toUser(r, u))
	return nil
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var b userBody
	if err := decode(w, r, &b, false); err != nil {
		return err
	}
	if b.UserName == nil || strings.TrimSpace(*b.UserName) == "" {
		return &scimError{status: 400, scimType: "invalidValue", detail: "userName is required"}
	}
	u, err := s.eng.CreateUser(r.Context(), p, b.input(false))
	if err != nil {
		return err
	}
	out := toUser(r, u)
	w.Header().Set("Location", out.Meta.Location)
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) putUser(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var b userBody
	if err := decode(w, r, &b, false); err != nil {
		return err
	}
	if b.UserName == nil || strings.TrimSpace(*b.UserName) == "" {
		return &scimError{status: 400, scimType: "invalidValue", detail: "userName is required"}
	}
	u, err := s.eng.UpdateUser(r.Context(), p, r.PathValue("id"), b.input(true))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toUser(r, u))
	return nil
}

// patchUser applies add/replace/remove on the simple attributes and on emails / phoneNumbers
// (which hold one value each in otpd).
func (s *Server) patchUser(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var b patchOp
	if err := decode(w, r, &b, true); err != nil {
		return err
	}
	if len(b.Operations) == 0 {
		return &scimError{status: 400, scimType: "invalidValue", detail: "Operations is empty"}
	}
	var in engine.UserInput
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
			if n, ok := values["name"]; ok { // {"name": {"givenName": …}} flattens into its parts
				var parts map[string]json.RawMessage
				if json.Unmarshal(n, &parts) == nil {
					delete(values, "name")
					for k, v := range parts {
						values["name."+k] = v
					}
				}
			}
		} else {
			values[op.Path] = op.Value
		}
		for path, raw := range values {
			if err := patchUserAttr(&in, kind, path, raw); err != nil {
				return err
			}
		}
	}
	u, err := s.eng.UpdateUser(r.Context(), p, r.PathValue("id"), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toUser(r, u))
	return nil
}

func patchUserAttr(in *engine.UserInput, kind, path string, raw json.RawMessage) error {
	attr := strings.ToLower(strings.TrimPrefix(strings.ToLower(path), strings.ToLower(SchemaUser)+":"))
	// A value filter on the single email or phone ("emails[type eq \"work\"].value") addresses
	// that one value.
	if i := strings.IndexByte(attr, '['); i > 0 {
		if j := strings.LastIndexByte(attr, ']'); j > i {
			attr = attr[:i] + attr[j+1:]
		}
	}
	str := func() (*string, error) {
		v := ""
		if kind == "remove" {
			return &v, nil
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, &scimError{status: 400, scimType: "invalidValue", detail: path + " must be a string"}
		}
		return &v, nil
	}
	multi := func() (*string, error) {
		v := ""
		if kind == "remove" {
			return &v, nil
		}
		var vs []multiVal
		if err := json.Unmarshal(raw, &vs); err == nil {
			v = primary(vs)
			return &v, nil
		}
		return str()
	}
	var err error
	switch attr {
	case "username":
		if kind == "remove" {
			return &scimError{status: 400, scimType: "mutability", detail: "userName is required"}
		}
		in.Login, err = str()
	case "externalid":
		in.ExternalID, err = str()
	case "name.givenname":
		in.FirstName, err = str()
	case "name.familyname":
		in.LastName, err = str()
	case "preferredlanguage":
		in.Language, err = str()
	case "emails", "emails.value":
		in.Email, err = multi()
	case "phonenumbers", "phonenumbers.value":
		in.Phone, err = multi()
	case "active":
		var b flexBool
		if kind == "remove" {
			return &scimError{status: 400, scimType: "mutability", detail: "active cannot be removed"}
		}
		if json.Unmarshal(raw, &b) != nil {
			return &scimError{status: 400, scimType: "invalidValue", detail: "active must be a boolean"}
		}
		v := bool(b)
		in.Enabled = &v
	case "id", "meta", "schemas":
		return &scimError{status: 400, scimType: "mutability", detail: path + " cannot be changed"}
	case "password":
		return &scimError{status: 400, scimType: "mutability", detail: "otpd keeps no passwords"}
	default:
		return &scimError{status: 400, scimType: "invalidPath", detail: path + " is not an attribute otpd keeps"}
	}
	return err
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := s.eng.DeleteUser(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
