package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
)

// The messaging part of the native API: message templates (the BSG surface's too) with their
// moderation, the price table, and the tenant's messaging settings — the SMS-pumping defences
// (destination allow-list, number-block limit, daily caps, spend cap) and the BSG session rules.
// The engine decides who may do what: settings, prices, template changes and moderation need an
// admin key; any key of the tenant may list, read, create and delete templates, as on BSG.

func init() { routeSets = append(routeSets, (*Server).messagingRoutes) }

func (s *Server) messagingRoutes() []route {
	return []route{
		{"GET", "/v1/settings/messaging", true, s.getMessagingSettings},
		{"PATCH", "/v1/settings/messaging", true, s.patchMessagingSettings},
		{"GET", "/v1/prices", true, s.listPrices},
		{"PUT", "/v1/prices/{channel}/{country}", true, s.putPrice},
		{"DELETE", "/v1/prices/{channel}/{country}", true, s.deletePrice},
		{"POST", "/v1/templates", true, s.createTemplate},
		{"GET", "/v1/templates", true, s.listTemplates},
		{"GET", "/v1/templates/{id}", true, s.getTemplate},
		{"PATCH", "/v1/templates/{id}", true, s.patchTemplate},
		{"DELETE", "/v1/templates/{id}", true, s.deleteTemplate},
		{"POST", "/v1/templates/{id}/approve", true, s.approveTemplate},
		{"POST", "/v1/templates/{id}/reject", true, s.rejectTemplate},
	}
}

// ---- settings ---------------------------------------------------------------------------------

type messagingSettings struct {
	engine.MessagingSettings
	Overrides []string `json:"overrides"`
}

func (s *Server) getMessagingSettings(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	v, err := s.eng.GetMessagingSettings(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toMessagingSettings(v))
	return nil
}

func toMessagingSettings(v *engine.MessagingSettingsView) messagingSettings {
	out := messagingSettings{MessagingSettings: v.MessagingSettings, Overrides: v.Overrides}
	if out.AllowedCountries == nil {
		out.AllowedCountries = []string{}
	}
	if out.DialCodeDailyCaps == nil {
		out.DialCodeDailyCaps = map[string]int{}
	}
	return out
}

func (s *Server) patchMessagingSettings(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var patch map[string]json.RawMessage
	if err := decode(w, r, &patch, false); err != nil {
		return err
	}
	raw, _ := json.Marshal(patch)
	v, err := s.eng.UpdateMessagingSettings(r.Context(), p, raw)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toMessagingSettings(v))
	return nil
}

// ---- prices -----------------------------------------------------------------------------------

type price struct {
	Channel   string    `json:"channel"`
	Country   string    `json:"country"`
	Price     string    `json:"price"`
	UpdatedAt time.Time `json:"updated_at"`
}

type priceList struct {
	Currency string  `json:"currency"`
	Items    []price `json:"items"`
}

func toPrice(p *store.Price) price {
	return price{Channel: p.Channel, Country: p.Country, Price: p.Price, UpdatedAt: p.UpdatedAt}
}

func (s *Server) listPrices(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	l, err := s.eng.ListPrices(r.Context(), p)
	if err != nil {
		return err
	}
	out := priceList{Currency: l.Currency, Items: make([]price, 0, len(l.Prices))}
	for i := range l.Prices {
		out.Items = append(out.Items, toPrice(&l.Prices[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) putPrice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct {
		Price string `json:"price"`
	}
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	row, err := s.eng.SetPrice(r.Context(), p, r.PathValue("channel"), r.PathValue("country"), req.Price)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toPrice(row))
	return nil
}

func (s *Server) deletePrice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := s.eng.DeletePrice(r.Context(), p, r.PathValue("channel"), r.PathValue("country")); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- templates --------------------------------------------------------------------------------

type messageTemplate struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Text      string    `json:"text"`
	Countries []string  `json:"countries"`
	Status    string    `json:"status"`
	Default   bool      `json:"default"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toTemplate(t *store.Template) messageTemplate {
	cs := t.Countries
	if cs == nil {
		cs = []string{}
	}
	return messageTemplate{ID: t.ID, Name: t.Name, Text: t.Text, Countries: cs, Status: t.Status,
		Default: t.Default, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
}

type templateFields struct {
	Name      *string   `json:"name"`
	Text      *string   `json:"text"`
	Countries *[]string `json:"countries"`
}

func (f templateFields) input() engine.TemplateInput {
	return engine.TemplateInput{Name: f.Name, Text: f.Text, Countries: f.Countries}
}

// templateID reads {id}; anything but a positive integer is a template that does not exist.
func templateID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, engine.ErrNotFound
	}
	return id, nil
}

func (s *Server) createTemplate(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req templateFields
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	t, err := s.eng.CreateTemplate(r.Context(), p, req.input())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/templates/"+strconv.FormatInt(t.ID, 10))
	writeJSON(w, http.StatusCreated, toTemplate(t))
	return nil
}

type templateList struct {
	Items []messageTemplate `json:"items"`
	Total int               `json:"total"`
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	var errs engine.ValidationErrors
	f := engine.TemplateFilter{Status: q.Get("status"), Limit: 50}
	switch f.Status {
	case "", store.TemplateRequested, store.TemplateApproved, store.TemplateRejected, store.TemplateDeleted:
	default:
		errs = append(errs, &engine.ValidationError{Field: "status", Message: "must be requested, approved, rejected or deleted"})
	}
	if n, verr := pageLimit(q, 0); verr != nil {
		errs = append(errs, verr)
	} else {
		f.Limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, &engine.ValidationError{Field: "offset", Message: "must be 0 or more"})
		}
		f.Offset = n
	}
	if len(errs) > 0 {
		return errs
	}
	ts, total, err := s.eng.ListTemplates(r.Context(), p, f)
	if err != nil {
		return err
	}
	out := templateList{Items: make([]messageTemplate, 0, len(ts)), Total: total}
	for i := range ts {
		out.Items = append(out.Items, toTemplate(&ts[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	id, err := templateID(r)
	if err != nil {
		return err
	}
	t, err := s.eng.GetTemplate(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toTemplate(t))
	return nil
}

func (s *Server) patchTemplate(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req templateFields
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	id, err := templateID(r)
	if err != nil {
		return err
	}
	t, err := s.eng.UpdateTemplate(r.Context(), p, id, req.input())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toTemplate(t))
	return nil
}

func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	id, err := templateID(r)
	if err != nil {
		return err
	}
	if err := s.eng.DeleteTemplate(r.Context(), p, id); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) approveTemplate(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	return s.moderateTemplate(w, r, p, s.eng.ApproveTemplate)
}

func (s *Server) rejectTemplate(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	return s.moderateTemplate(w, r, p, s.eng.RejectTemplate)
}

func (s *Server) moderateTemplate(w http.ResponseWriter, r *http.Request, p engine.Principal,
	do func(ctx context.Context, p engine.Principal, id int64) (*store.Template, error)) error {
	if err := decode(w, r, &struct{}{}, true); err != nil {
		return err
	}
	id, err := templateID(r)
	if err != nil {
		return err
	}
	t, err := do(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toTemplate(t))
	return nil
}
