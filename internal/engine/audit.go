package engine

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/store"
)

// AuditQuery selects a page of a tenant's audit events.
type AuditQuery struct {
	// Action keeps only events of this action (e.g. "device.locked"); "" keeps all.
	Action string
	// Cursor is the NextCursor of the previous page; "" starts at the newest event.
	Cursor string
	// Limit is the page size, 1–500 (0: 50).
	Limit int
}

// AuditPage is one page of audit events, newest first.
type AuditPage struct {
	Events []store.AuditEvent
	// NextCursor continues after the last event; empty when the page was not full.
	NextCursor string
}

// ListAuditEvents returns the caller's tenant's audit events, newest first (admin only). Audit
// events hold who did what to which object, the outcome and the client IP — never a code, token,
// seed, key or password (engine.audit writes them that way).
func (e *Engine) ListAuditEvents(ctx context.Context, p Principal, q AuditQuery) (*AuditPage, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	if q.Limit < 1 || q.Limit > 500 {
		return nil, &ValidationError{Field: "limit", Message: "must be 1–500"}
	}
	if len(q.Action) > 64 || strings.ContainsFunc(q.Action, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return nil, &ValidationError{Field: "action", Message: "is not an audit action (e.g. device.locked)"}
	}
	f := store.AuditFilter{Action: q.Action, Limit: q.Limit}
	if q.Cursor != "" {
		at, id, ok := decodeAuditCursor(q.Cursor)
		if !ok {
			return nil, &ValidationError{Field: "cursor", Message: "is not a cursor this API returned"}
		}
		f.BeforeAt, f.BeforeID = at, id
	}
	evs, err := e.store.PageAuditEvents(ctx, p.TenantID, f)
	if err != nil {
		return nil, err
	}
	page := &AuditPage{Events: evs}
	if len(evs) == q.Limit {
		last := evs[len(evs)-1]
		page.NextCursor = encodeAuditCursor(last.At, last.ID)
	}
	return page, nil
}

// An audit cursor is the (at, id) of the last event of a page: events are ordered by time, and
// by id among events of the same millisecond.
func encodeAuditCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMilli(), 10) + ":" + id))
}

func decodeAuditCursor(c string) (time.Time, string, bool) {
	if len(c) > 128 {
		return time.Time{}, "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", false
	}
	msText, id, ok := strings.Cut(string(b), ":")
	ms, err := strconv.ParseInt(msText, 10, 64)
	if !ok || err != nil || ms <= 0 || id == "" {
		return time.Time{}, "", false
	}
	return time.UnixMilli(ms).UTC(), id, true
}
