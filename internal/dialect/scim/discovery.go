package scim

import (
	"net/http"
	"strings"

	"github.com/otpd/otpd/internal/engine"
)

// The discovery endpoints (RFC 7644 §4): what this service provider supports, its resource
// types and their schemas. They are answered to authenticated clients only, like the rest.

func (s *Server) serviceProviderConfig(w http.ResponseWriter, r *http.Request, _ engine.Principal) error {
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":          []string{SchemaSPConfig},
		"documentationUri": "https://github.com/otpd/otpd/blob/main/docs/scim.md",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": MaxResults},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": true},
		"etag":             map[string]any{"supported": false},
		"authenticationSchemes": []map[string]any{
			{"type": "httpbasic", "name": "HTTP Basic", "primary": true,
				"description": "An otpd application's client id and client secret."},
			{"type": "oauthbearertoken", "name": "Bearer API key",
				"description": "An otpd API key as a bearer token."},
		},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": baseURL(r) + "/ServiceProviderConfig"},
	})
	return nil
}

func resourceTypeDoc(r *http.Request, name string) map[string]any {
	schema, endpoint, desc := SchemaUser, "/Users", "A user of the tenant"
	if name == "OtpDevice" {
		schema, endpoint, desc = SchemaOtpDevice, "/OtpDevice", "A user's second factor: TOTP, HOTP, SMS, EMAIL or PIN"
	}
	return map[string]any{
		"schemas": []string{SchemaResourceType}, "id": name, "name": name, "endpoint": endpoint,
		"description": desc, "schema": schema,
		"meta": map[string]any{"resourceType": "ResourceType", "location": baseURL(r) + "/ResourceTypes/" + name},
	}
}

func (s *Server) resourceTypes(w http.ResponseWriter, r *http.Request, _ engine.Principal) error {
	items := []any{resourceTypeDoc(r, "User"), resourceTypeDoc(r, "OtpDevice")}
	writeJSON(w, http.StatusOK, newList(2, listQuery{startIndex: 1}, items))
	return nil
}

func (s *Server) resourceType(w http.ResponseWriter, r *http.Request, _ engine.Principal) error {
	name := r.PathValue("name")
	switch {
	case strings.EqualFold(name, "User"):
		name = "User"
	case strings.EqualFold(name, "OtpDevice"):
		name = "OtpDevice"
	default:
		return engine.ErrNotFound
	}
	writeJSON(w, http.StatusOK, resourceTypeDoc(r, name))
	return nil
}

// attribute describes one attribute in a schema document (RFC 7643 §7).
func attribute(name, typ, mutability, returned, uniqueness string, required, caseExact bool, desc string) map[string]any {
	a := map[string]any{"name": name, "type": typ, "multiValued": false, "description": desc,
		"required": required, "mutability": mutability, "returned": returned, "uniqueness": uniqueness}
	if typ == "string" {
		a["caseExact"] = caseExact
	}
	return a
}

func schemaDoc(r *http.Request, id string) map[string]any {
	var (
		name, desc string
		attrs      []map[string]any
	)
	if id == SchemaOtpDevice {
		name, desc = "OtpDevice", "OTP device (Soffid dialect)"
		attrs = []map[string]any{
			attribute("id", "integer", "readOnly", "always", "server", false, false, "Public numeric id"),
			attribute("name", "string", "readWrite", "default", "none", false, true, "Display name, e.g. TOTP00000035"),
			attribute("type", "string", "immutable", "default", "none", true, false, "TOTP, HOTP, SMS, EMAIL or PIN"),
			attribute("user", "string", "immutable", "default", "none", true, true, "The owner's userName"),
			attribute("status", "string", "readWrite", "default", "none", false, false, "C created, V validated, D disabled, L locked"),
			attribute("fails", "integer", "readOnly", "default", "none", false, false, "Consecutive failed verifications"),
			attribute("created", "dateTime", "readOnly", "default", "none", false, false, "\"yyyy-MM-dd HH:mm:ss\", UTC"),
			attribute("lastUsed", "dateTime", "readOnly", "default", "none", false, false, "Last successful verification"),
			attribute("phone", "string", "readWrite", "default", "none", false, true, "SMS devices: the number"),
			attribute("email", "string", "readWrite", "default", "none", false, false, "EMAIL devices: the address"),
			attribute("pin", "string", "writeOnly", "never", "none", false, true, "PIN devices: the PIN (never returned, never filterable)"),
			attribute("secret", "string", "writeOnly", "never", "none", false, true, "TOTP/HOTP: an imported base32 seed (never returned, never filterable)"),
			attribute("uri", "string", "readOnly", "request", "none", false, true, "TOTP/HOTP create answer only: the otpauth:// URI"),
			attribute("image", "binary", "readOnly", "request", "none", false, false, "TOTP/HOTP create answer only: the QR code, base64 PNG"),
		}
	} else {
		name, desc = "User", "User Account"
		attrs = []map[string]any{
			attribute("userName", "string", "readWrite", "default", "server", true, true, "Unique login"),
			attribute("externalId", "string", "readWrite", "default", "server", false, true, "The provisioning client's id"),
			{"name": "name", "type": "complex", "multiValued": false, "mutability": "readWrite", "returned": "default",
				"required": false, "description": "The user's name", "subAttributes": []map[string]any{
					attribute("givenName", "string", "readWrite", "default", "none", false, false, "Given name"),
					attribute("familyName", "string", "readWrite", "default", "none", false, false, "Family name"),
					attribute("formatted", "string", "readOnly", "default", "none", false, false, "Given and family name"),
				}},
			{"name": "emails", "type": "complex", "multiValued": true, "mutability": "readWrite", "returned": "default",
				"required": false, "description": "One email address (the primary one is kept)", "subAttributes": []map[string]any{
					attribute("value", "string", "readWrite", "default", "none", false, false, "Address"),
				}},
			{"name": "phoneNumbers", "type": "complex", "multiValued": true, "mutability": "readWrite", "returned": "default",
				"required": false, "description": "One phone number, international form", "subAttributes": []map[string]any{
					attribute("value", "string", "readWrite", "default", "none", false, true, "E.164 number"),
				}},
			attribute("preferredLanguage", "string", "readWrite", "default", "none", false, false, "Language tag"),
			{"name": "active", "type": "boolean", "multiValued": false, "mutability": "readWrite", "returned": "default",
				"required": false, "description": "Whether the user may sign in"},
		}
	}
	return map[string]any{"schemas": []string{SchemaSchema}, "id": id, "name": name, "description": desc,
		"attributes": attrs, "meta": map[string]any{"resourceType": "Schema", "location": baseURL(r) + "/Schemas/" + id}}
}

func (s *Server) schemas(w http.ResponseWriter, r *http.Request, _ engine.Principal) error {
	items := []any{schemaDoc(r, SchemaUser), schemaDoc(r, SchemaOtpDevice)}
	writeJSON(w, http.StatusOK, newList(2, listQuery{startIndex: 1}, items))
	return nil
}

func (s *Server) schema(w http.ResponseWriter, r *http.Request, _ engine.Principal) error {
	id := r.PathValue("id")
	switch {
	case strings.EqualFold(id, SchemaUser):
		id = SchemaUser
	case strings.EqualFold(id, SchemaOtpDevice):
		id = SchemaOtpDevice
	default:
		return engine.ErrNotFound
	}
	writeJSON(w, http.StatusOK, schemaDoc(r, id))
	return nil
}
