package engine

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otpd/otpd/internal/store"
)

// Templates: the text of a verification message with the {code2fa} placeholder exactly once, the
// countries it may be sent to, and its moderation status. Every tenant has a default template,
// created with the tenant (or on first use, for tenants older than that), that is approved and
// can be neither deleted nor changed.

// CodePlaceholder marks where a template's text takes the code.
const CodePlaceholder = "{code2fa}"

// DefaultTemplateText is the text of every tenant's default template.
const DefaultTemplateText = "Your code is " + CodePlaceholder

const defaultTemplateName = "Default"

// The validation messages are BSG's words, so the BSG surface can show them as they are.
const (
	msgPlaceholderMissing = "The variable {code2fa} is required in the text"
	msgPlaceholderTwice   = "The {code2fa} variable must occur only once in the text"
	msgNameTaken          = "User has a template with the identical name!"
	msgTemplateQuota      = "The number of requests to create a template is limited to 10. Please wait for the manager approve before making a new request."
)

// TemplateInput carries template fields; nil is "not given" (for updates).
type TemplateInput struct {
	Name      *string
	Text      *string
	Countries *[]string
}

// checkTemplate validates and normalises the given fields into t.
func checkTemplate(t *store.Template, in TemplateInput) error {
	var errs ValidationErrors
	if in.Name != nil {
		name := strings.TrimSpace(*in.Name)
		if n := utf8.RuneCountInString(name); n < 3 || n > 50 || !utf8.ValidString(name) || strings.ContainsFunc(name, isControl) {
			errs = append(errs, fieldErr("name", "The name must be 3 to 50 characters."))
		}
		t.Name = name
	}
	if in.Text != nil {
		text := *in.Text
		switch n := strings.Count(text, CodePlaceholder); {
		case n == 0:
			errs = append(errs, fieldErr("text", msgPlaceholderMissing))
		case n > 1:
			errs = append(errs, fieldErr("text", msgPlaceholderTwice))
		}
		if utf8.RuneCountInString(text) > maxTemplateText || !utf8.ValidString(text) ||
			strings.ContainsFunc(text, func(r rune) bool { return isControl(r) && r != '\n' }) {
			errs = append(errs, fieldErr("text", "The text must be at most 1000 printable characters."))
		}
		t.Text = text
	}
	if in.Countries != nil {
		cs := normCountries(*in.Countries)
		for _, c := range cs {
			if !knownCountry(c) {
				errs = append(errs, fieldErr("countries", "The value you selected is not a valid choice."))
				break
			}
		}
		if len(cs) > 250 {
			errs = append(errs, fieldErr("countries", "Too many countries."))
		}
		t.Countries = cs
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// defaultTemplate is a tenant's default template row, under the given name.
func defaultTemplate(tenantID, name string, now time.Time) *store.Template {
	return &store.Template{TenantID: tenantID, Name: name, Text: DefaultTemplateText,
		Status: store.TemplateApproved, Default: true, CreatedAt: now, UpdatedAt: now}
}

// ensureDefaultTemplate creates the tenant's default template if it has none (idempotent; two
// instances racing create one).
func (e *Engine) ensureDefaultTemplate(ctx context.Context, tenantID string) error {
	if _, err := e.store.GetDefaultTemplate(ctx, tenantID); !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := e.clock.Now()
	err := e.store.CreateTemplate(ctx, defaultTemplate(tenantID, defaultTemplateName, now))
	if errors.Is(err, store.ErrAlreadyExists) {
		// Another request created it, or the tenant has a template named "Default": then that
		// name is taken and the default gets another.
		if _, gerr := e.store.GetDefaultTemplate(ctx, tenantID); gerr == nil {
			return nil
		}
		err = e.store.CreateTemplate(ctx, defaultTemplate(tenantID, "Default (otpd)", now))
		if errors.Is(err, store.ErrAlreadyExists) {
			return nil
		}
	}
	return err
}

// CreateTemplate adds a template. It is approved at once unless the tenant's moderation is on;
// then it waits as "requested" (at most 10 at a time) for ApproveTemplate.
func (e *Engine) CreateTemplate(ctx context.Context, p Principal, in TemplateInput) (*store.Template, error) {
	if in.Name == nil || in.Text == nil {
		var errs ValidationErrors
		if in.Name == nil {
			errs = append(errs, fieldErr("name", "This value should not be blank."))
		}
		if in.Text == nil {
			errs = append(errs, fieldErr("text", "This value should not be blank."))
		}
		return nil, errs
	}
	if in.Countries == nil {
		in.Countries = &[]string{}
	}
	now := e.clock.Now()
	t := &store.Template{TenantID: p.TenantID, CreatedAt: now, UpdatedAt: now}
	if err := checkTemplate(t, in); err != nil {
		return nil, err
	}
	if err := e.ensureDefaultTemplate(ctx, p.TenantID); err != nil {
		return nil, err
	}
	err := e.inTx(ctx, func(q store.Queries) error {
		s, _, err := e.messagingSettings(ctx, q, p.TenantID)
		if err != nil {
			return err
		}
		t.Status = store.TemplateApproved
		if s.Moderation {
			t.Status = store.TemplateRequested
			n, err := q.CountTemplates(ctx, p.TenantID, store.TemplateRequested)
			if err != nil {
				return err
			}
			if n >= requestedTemplateMax {
				return outcome(ErrTemplateQuota, ErrConflict, msgTemplateQuota)
			}
		}
		if err := q.CreateTemplate(ctx, t); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return outcome(ErrTemplateNameTaken, ErrConflict, msgNameTaken)
			}
			return err
		}
		return e.audit(ctx, q, p, "template.create", templateTarget(t.ID), t.Status, "")
	})
	if err != nil {
		return nil, mapOutcome(err)
	}
	return t, nil
}

func templateTarget(id int64) string { return "template:" + strconv.FormatInt(id, 10) }

// mapOutcome keeps messaging outcomes and validation errors as they are and maps store
// sentinels to engine ones.
func mapOutcome(err error) error {
	var oe *outcomeError
	var ve ValidationErrors
	var v *ValidationError
	if errors.As(err, &oe) || errors.As(err, &ve) || errors.As(err, &v) {
		return err
	}
	return mapStoreErr(err)
}

// GetTemplate returns one of the tenant's templates (deleted ones too, with status deleted).
func (e *Engine) GetTemplate(ctx context.Context, p Principal, id int64) (*store.Template, error) {
	if err := e.ensureDefaultTemplate(ctx, p.TenantID); err != nil {
		return nil, err
	}
	t, err := e.store.GetTemplate(ctx, p.TenantID, id)
	return t, mapStoreErr(err)
}

// TemplateFilter selects templates; see store.TemplateFilter.
type TemplateFilter = store.TemplateFilter

// ListTemplates returns a page of the tenant's templates and how many match.
func (e *Engine) ListTemplates(ctx context.Context, p Principal, f TemplateFilter) ([]store.Template, int, error) {
	if err := e.ensureDefaultTemplate(ctx, p.TenantID); err != nil {
		return nil, 0, err
	}
	ts, total, err := e.store.ListTemplates(ctx, p.TenantID, f)
	return ts, total, mapStoreErr(err)
}

// changeTemplate reads a live template, lets fn change it, and writes it back with an audit record.
func (e *Engine) changeTemplate(ctx context.Context, p Principal, id int64, action string,
	fn func(q store.Queries, t *store.Template) error) (*store.Template, error) {
	var out *store.Template
	err := e.inTx(ctx, func(q store.Queries) error {
		t, err := q.GetTemplate(ctx, p.TenantID, id)
		if err != nil {
			return err
		}
		if t.Status == store.TemplateDeleted {
			return store.ErrNotFound
		}
		if err := fn(q, t); err != nil {
			return err
		}
		t.UpdatedAt = e.clock.Now()
		if err := q.UpdateTemplate(ctx, t); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return outcome(ErrTemplateNameTaken, ErrConflict, msgNameTaken)
			}
			return err
		}
		out = t
		return e.audit(ctx, q, p, action, templateTarget(t.ID), t.Status, "")
	})
	if err != nil {
		return nil, mapOutcome(err)
	}
	return out, nil
}

// DeleteTemplate marks a template deleted: sends can no longer use it and its name is free. The
// default template cannot be deleted.
func (e *Engine) DeleteTemplate(ctx context.Context, p Principal, id int64) error {
	if err := e.ensureDefaultTemplate(ctx, p.TenantID); err != nil {
		return err
	}
	_, err := e.changeTemplate(ctx, p, id, "template.delete", func(q store.Queries, t *store.Template) error {
		if t.Default {
			return outcome(ErrDefaultTemplate, ErrConflict, "Default template is not available for deletion")
		}
		t.Status = store.TemplateDeleted
		return nil
	})
	return err
}

// UpdateTemplate changes a template's name, text or countries (admin only). When moderation is
// on, a changed text or country list sends the template back for approval.
func (e *Engine) UpdateTemplate(ctx context.Context, p Principal, id int64, in TemplateInput) (*store.Template, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	return e.changeTemplate(ctx, p, id, "template.update", func(q store.Queries, t *store.Template) error {
		if t.Default {
			return outcome(ErrDefaultTemplate, ErrConflict, "The default template cannot be changed")
		}
		before := *t
		if err := checkTemplate(t, in); err != nil {
			return err
		}
		s, _, err := e.messagingSettings(ctx, q, p.TenantID)
		if err != nil {
			return err
		}
		if s.Moderation && (t.Text != before.Text || strings.Join(t.Countries, ",") != strings.Join(before.Countries, ",")) {
			t.Status = store.TemplateRequested
		}
		return nil
	})
}

// ApproveTemplate lets a requested or rejected template be used (admin only: the operator's
// moderation).
func (e *Engine) ApproveTemplate(ctx context.Context, p Principal, id int64) (*store.Template, error) {
	return e.moderate(ctx, p, id, store.TemplateApproved)
}

// RejectTemplate refuses a template (admin only).
func (e *Engine) RejectTemplate(ctx context.Context, p Principal, id int64) (*store.Template, error) {
	return e.moderate(ctx, p, id, store.TemplateRejected)
}

func (e *Engine) moderate(ctx context.Context, p Principal, id int64, status string) (*store.Template, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	action := "template.approve"
	if status == store.TemplateRejected {
		action = "template.reject"
	}
	return e.changeTemplate(ctx, p, id, action, func(q store.Queries, t *store.Template) error {
		if t.Default && status != store.TemplateApproved {
			return outcome(ErrDefaultTemplate, ErrConflict, "The default template cannot be changed")
		}
		t.Status = status
		return nil
	})
}

// templateForSend returns the template a send uses, or why it cannot.
func (e *Engine) templateForSend(ctx context.Context, tenantID string, id int64, country string) (*store.Template, error) {
	t, err := e.store.GetTemplate(ctx, tenantID, id)
	if errors.Is(err, store.ErrNotFound) {
		if err := e.ensureDefaultTemplate(ctx, tenantID); err != nil {
			return nil, err
		}
		t, err = e.store.GetTemplate(ctx, tenantID, id)
	}
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && t.Status == store.TemplateDeleted):
		return nil, outcome(ErrTemplateNotFound, invalid("template_id", "Template is not available."), "Template is not available.")
	case err != nil:
		return nil, err
	case t.Status != store.TemplateApproved:
		return nil, outcome(ErrTemplateNotApproved, invalid("template_id", "Invalid template status"), "Invalid template status")
	case len(t.Countries) > 0 && !slices.Contains(t.Countries, country):
		const msg = "The recipients phone number is located in a country that is not on the list of countries allowed for the selected template. Please register new message template."
		return nil, outcome(ErrTemplateCountry, invalid("recipient", msg), msg)
	}
	return t, nil
}
