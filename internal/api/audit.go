package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/otpd/otpd/internal/engine"
)

func init() { routeSets = append(routeSets, (*Server).auditRoutes) }

// auditRoutes serve the tenant's audit log (admin keys only).
func (s *Server) auditRoutes() []route {
	return []route{{"GET", "/v1/audit", true, s.listAudit}}
}

// auditEvent is an audit record on the wire. Records never hold a code, token, seed, key or
// password; the actor is the API key's public id ("key:…"), an application or "operator".
type auditEvent struct {
	ID      string          `json:"id"`
	At      time.Time       `json:"at"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Target  string          `json:"target"`
	Result  string          `json:"result"`
	IP      string          `json:"ip"`
	Details json.RawMessage `json:"details"`
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	limit, verr := pageLimit(q, 0) // 0: the engine's default
	if verr != nil {
		return verr
	}
	page, err := s.eng.ListAuditEvents(r.Context(), p, engine.AuditQuery{Action: q.Get("action"), Cursor: q.Get("cursor"), Limit: limit})
	if err != nil {
		return err
	}
	out := struct {
		Items      []auditEvent `json:"items"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}{Items: make([]auditEvent, 0, len(page.Events)), NextCursor: page.NextCursor}
	for _, e := range page.Events {
		details := json.RawMessage(e.Details)
		if !json.Valid(details) {
			details = json.RawMessage("{}")
		}
		out.Items = append(out.Items, auditEvent{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action,
			Target: e.Target, Result: e.Result, IP: e.IP, Details: details})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
