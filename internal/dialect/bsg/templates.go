package bsg

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
)

// The four template operations: otp_template_list, otp_template, otp_template_create,
// otp_template_delete.

// templateID reads the {templateId} path parameter (1–9 digits).
func templateID(r *http.Request) (int64, bool) {
	s := r.PathValue("templateId")
	if !templateIDRE.MatchString(s) {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

var templateSorts = []string{"template_id", "status", "name", "updated_at"}

func (h *Handler) templateList(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	q, e := parseQuery(r)
	if e != nil {
		return e
	}
	var f engine.TemplateFilter
	for _, s := range q.ids("filter[ids]", 100, templateIDRE.MatchString) {
		n, _ := strconv.ParseInt(s, 10, 64)
		f.IDs = append(f.IDs, n)
	}
	f.Status = q.choice("filter[status]", "", store.TemplateRequested, store.TemplateApproved, store.TemplateRejected, store.TemplateDeleted)
	f.Offset = q.integer("page[offset]", 0, 0, maxOffset)
	f.Limit = q.integer("page[limit]", 10, 10, 500)
	f.Sort = q.choice("sort", "template_id", templateSorts...)
	f.Desc = q.choice("way", "asc", "asc", "desc") == "desc"
	if len(q.errs) > 0 {
		return invalidFields(q.errs)
	}
	ts, total, err := h.eng.ListTemplates(r.Context(), p, f)
	if err != nil {
		return fromEngine(err)
	}
	out := make([]template, len(ts))
	for i := range ts {
		out[i] = toTemplate(&ts[i])
	}
	writeJSON(w, http.StatusOK, data{list{Total: total, List: out}})
	return nil
}

func (h *Handler) templateGet(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	id, ok := templateID(r)
	if !ok {
		return msgAnswer(http.StatusNotFound, msgModelNotFound)
	}
	t, err := h.eng.GetTemplate(r.Context(), p, id)
	if errors.Is(err, engine.ErrNotFound) {
		return msgAnswer(http.StatusNotFound, msgModelNotFound)
	}
	if err != nil {
		return fromEngine(err)
	}
	writeJSON(w, http.StatusOK, data{toTemplate(t)})
	return nil
}

// templateRefusals are BSG's words for the engine's template outcomes.
var templateRefusals = []struct {
	err error
	msg string
}{
	{engine.ErrTemplateNameTaken, "User has a template with the identical name!"},
	{engine.ErrTemplateQuota, "The number of requests to create a template is limited to 10. Please wait for the manager approve before making a new request."},
	{engine.ErrDefaultTemplate, "Default template is not available for deletion"},
}

// fromTemplateEngine maps an engine error of a template operation: validation problems are a
// list of messages (the engine words them as BSG does).
func fromTemplateEngine(err error) *apiError {
	for _, t := range templateRefusals {
		if errors.Is(err, t.err) {
			return invalidData(t.msg)
		}
	}
	var vs engine.ValidationErrors
	var ve *engine.ValidationError
	switch {
	case errors.As(err, &vs):
		msgs := make([]string, len(vs))
		for i, v := range vs {
			msgs[i] = v.Message
		}
		return invalidData(msgs...)
	case errors.As(err, &ve):
		return invalidData(ve.Message)
	}
	return fromEngine(err)
}

func (h *Handler) templateCreate(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	raw, e := readRaw(w, r)
	if e != nil {
		return e
	}
	req, e := decodeTemplate(raw)
	if e != nil {
		return e
	}
	t, err := h.eng.CreateTemplate(r.Context(), p, engine.TemplateInput{Name: &req.Name, Text: &req.Text, Countries: &req.Countries})
	if err != nil {
		return fromTemplateEngine(err)
	}
	writeJSON(w, http.StatusOK, data{toTemplate(t)})
	return nil
}

type deleted struct {
	Status string `json:"status"`
}

func (h *Handler) templateDelete(w http.ResponseWriter, r *http.Request, p engine.Principal) *apiError {
	id, ok := templateID(r)
	if !ok {
		return service(http.StatusNotFound, msgTplNotFound)
	}
	err := h.eng.DeleteTemplate(r.Context(), p, id)
	if errors.Is(err, engine.ErrNotFound) {
		return service(http.StatusNotFound, msgTplNotFound)
	}
	if err != nil {
		return fromTemplateEngine(err)
	}
	writeJSON(w, http.StatusOK, data{deleted{"Successfully removed"}})
	return nil
}
