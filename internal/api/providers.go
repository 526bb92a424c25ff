package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/engine"
)

// Delivery providers (/v1/providers, admin keys) and their receipt callbacks
// (/v1/receipts/{provider_id}, authenticated by the provider's receipt token).
func init() { routeSets = append(routeSets, (*Server).providerRoutes) }

func (s *Server) providerRoutes() []route {
	return []route{
		{"POST", "/v1/providers", true, s.createProvider},
		{"GET", "/v1/providers", true, s.listProviders},
		{"GET", "/v1/providers/{id}", true, s.getProvider},
		{"PATCH", "/v1/providers/{id}", true, s.patchProvider},
		{"DELETE", "/v1/providers/{id}", true, s.deleteProvider},
		{"POST", "/v1/providers/{id}/test", true, s.testProvider},
		{"POST", "/v1/receipts/{provider_id}", false, s.receipt},
	}
}

// providerJSON is the wire form of a provider. Secret values are always masked; the receipt
// token appears only in the answer that created or rotated it.
type providerJSON struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Type         string            `json:"type"`
	Source       string            `json:"source"`
	Channels     []string          `json:"channels"`
	Role         string            `json:"role"`
	Enabled      bool              `json:"enabled"`
	Settings     json.RawMessage   `json:"settings"`
	Secrets      map[string]string `json:"secrets,omitempty"`
	ReceiptPath  string            `json:"receipt_path,omitempty"`
	ReceiptToken string            `json:"receipt_token,omitempty"`
	CreatedAt    *time.Time        `json:"created_at,omitempty"`
	UpdatedAt    *time.Time        `json:"updated_at,omitempty"`
}

func toProviderJSON(v *engine.ProviderView) providerJSON {
	out := providerJSON{ID: v.ID, Name: v.Name, Type: v.Type, Source: v.Source, Channels: v.Channels,
		Role: v.Role, Enabled: v.Enabled, Settings: v.Settings, Secrets: v.Secrets, ReceiptToken: v.ReceiptToken}
	if out.Channels == nil {
		out.Channels = []string{}
	}
	if len(out.Settings) == 0 {
		out.Settings = json.RawMessage("{}")
	}
	if v.Source == engine.SourceAPI {
		out.ReceiptPath = "/v1/receipts/" + url.PathEscape(v.ID)
		out.CreatedAt, out.UpdatedAt = &v.CreatedAt, &v.UpdatedAt
	}
	return out
}

type providerCreateRequest struct {
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Channels []string          `json:"channels"`
	Role     string            `json:"role"`
	Enabled  *bool             `json:"enabled"`
	Settings json.RawMessage   `json:"settings"`
	Secrets  map[string]string `json:"secrets"`
}

func (s *Server) createProvider(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req providerCreateRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	v, err := s.eng.CreateProvider(r.Context(), p, engine.ProviderInput{Name: req.Name, Type: req.Type,
		Channels: req.Channels, Role: req.Role, Enabled: req.Enabled, Settings: req.Settings, Secrets: req.Secrets})
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/providers/"+v.ID)
	writeJSON(w, http.StatusCreated, toProviderJSON(v))
	return nil
}

func (s *Server) listProviders(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	vs, err := s.eng.ListProviders(r.Context(), p)
	if err != nil {
		return err
	}
	out := struct {
		Items []providerJSON `json:"items"`
	}{Items: make([]providerJSON, 0, len(vs))}
	for i := range vs {
		out.Items = append(out.Items, toProviderJSON(&vs[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getProvider(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	v, err := s.eng.GetProvider(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toProviderJSON(v))
	return nil
}

type providerPatchRequest struct {
	Name               *string            `json:"name"`
	Channels           *[]string          `json:"channels"`
	Role               *string            `json:"role"`
	Enabled            *bool              `json:"enabled"`
	Settings           json.RawMessage    `json:"settings"`
	Secrets            map[string]*string `json:"secrets"`
	RotateReceiptToken bool               `json:"rotate_receipt_token"`
}

func (s *Server) patchProvider(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req providerPatchRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	v, err := s.eng.UpdateProvider(r.Context(), p, r.PathValue("id"), engine.ProviderPatch{Name: req.Name,
		Channels: req.Channels, Role: req.Role, Enabled: req.Enabled, Settings: req.Settings,
		Secrets: req.Secrets, RotateReceiptToken: req.RotateReceiptToken})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toProviderJSON(v))
	return nil
}

func (s *Server) deleteProvider(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := s.eng.DeleteProvider(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) testProvider(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct {
		To      string `json:"to"`
		Channel string `json:"channel"`
	}
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	res, err := s.eng.TestProvider(r.Context(), p, r.PathValue("id"), engine.ProviderTest{To: req.To, Channel: req.Channel})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Sent  bool   `json:"sent"`
		Error string `json:"error,omitempty"`
	}{res.Sent, res.Error})
	return nil
}

// receipt takes a provider's delivery-receipt callback: a JSON or form body, the provider's
// receipt token in the query. Unknown providers and wrong tokens are one 404.
func (s *Server) receipt(w http.ResponseWriter, r *http.Request, _ engine.Principal) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	token := q.Get("token")
	q.Del("token")
	ct := r.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	if ct != "" && mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "application/x-www-form-urlencoded" {
		return problem(http.StatusUnsupportedMediaType, "unsupported_media_type", "Send the receipt as application/json or application/x-www-form-urlencoded.")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return problem(http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("The body is larger than %d bytes.", maxBody))
		}
		return problem(http.StatusBadRequest, "invalid_json", "The body could not be read.")
	}
	if _, err := s.eng.ReceiptCallback(r.Context(), r.PathValue("provider_id"), token, ct, q, body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
