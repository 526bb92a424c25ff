package api

import (
	"encoding/base64"
	"net/http"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/store"
)

type startRequest struct {
	Channel     string `json:"channel"`
	To          string `json:"to"`
	CodeLength  int    `json:"code_length"`
	TTLSeconds  int    `json:"ttl_seconds"`
	MaxAttempts int    `json:"max_attempts"`
	Purpose     string `json:"purpose"`
	ClientIP    string `json:"client_ip"`
	Locale      string `json:"locale"`
}

// verification is the wire form of a session.
type verification struct {
	ID           string     `json:"id"`
	Status       string     `json:"status"`
	Channel      string     `json:"channel"`
	To           string     `json:"to"`
	Purpose      string     `json:"purpose"`
	CreatedAt    time.Time  `json:"created_at"`
	ExpiresAt    time.Time  `json:"expires_at"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"`
	AttemptsLeft int        `json:"attempts_left"`
	SendsLeft    int        `json:"sends_left"`
	Delivery     string     `json:"delivery,omitempty"`
	Code         string     `json:"code,omitempty"`
}

func toVerification(s *engine.Session) verification {
	return verification{
		ID: s.ID, Status: s.Status, Channel: s.Channel, To: s.Recipient, Purpose: s.Purpose,
		CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt, FinishedAt: s.FinishedAt,
		AttemptsLeft: s.AttemptsLeft(), SendsLeft: s.SendsLeft(), Delivery: s.Delivery, Code: s.Code,
	}
}

func (s *Server) startVerification(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req startRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	sess, err := s.eng.Start(r.Context(), p, engine.StartRequest{
		Channel: req.Channel, To: req.To, CodeLength: req.CodeLength,
		TTL: seconds(req.TTLSeconds), MaxAttempts: req.MaxAttempts,
		Purpose: req.Purpose, ClientIP: req.ClientIP, Locale: req.Locale,
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
	})
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if sess.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	w.Header().Set("Location", "/v1/verifications/"+sess.ID)
	writeJSON(w, status, toVerification(sess))
	return nil
}

func (s *Server) getVerification(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	sess, err := s.eng.Get(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toVerification(sess))
	return nil
}

type checkRequest struct {
	Code string `json:"code"`
}

type checkResponse struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	Valid        bool   `json:"valid"`
	AttemptsLeft int    `json:"attempts_left"`
}

func (s *Server) checkVerification(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req checkRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	res, err := s.eng.Check(r.Context(), p, r.PathValue("id"), req.Code)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, checkResponse{ID: res.Session.ID, Status: res.Session.Status,
		Valid: res.Valid(), AttemptsLeft: res.Session.AttemptsLeft()})
	return nil
}

func (s *Server) resendVerification(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := decode(w, r, &struct{}{}, true); err != nil {
		return err
	}
	sess, err := s.eng.Resend(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toVerification(sess))
	return nil
}

func (s *Server) cancelVerification(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := decode(w, r, &struct{}{}, true); err != nil {
		return err
	}
	sess, err := s.eng.Cancel(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toVerification(sess))
	return nil
}

type verificationList struct {
	Items      []verification `json:"items"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

func (s *Server) listVerifications(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	var errs engine.ValidationErrors
	f := engine.ListFilter{Status: q.Get("status"), Recipient: q.Get("to"), Channel: q.Get("channel")}
	switch f.Status {
	case "", store.StatusPending, store.StatusVerified, store.StatusFailed, store.StatusCanceled, store.StatusExpired:
	default:
		errs = append(errs, &engine.ValidationError{Field: "status", Message: "must be pending, verified, failed, canceled or expired"})
	}
	switch f.Channel {
	case "", engine.ChannelNone, engine.ChannelEmail, engine.ChannelSMS, engine.ChannelViber, engine.ChannelVoice, engine.ChannelWhatsApp:
	default:
		errs = append(errs, &engine.ValidationError{Field: "channel", Message: "must be none, email, sms, viber, voice or whatsapp"})
	}
	parseTime := func(name string, dst *time.Time) {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				errs = append(errs, &engine.ValidationError{Field: name, Message: "must be an RFC 3339 time, e.g. 2026-11-24T10:00:00Z"})
			}
			*dst = t
		}
	}
	parseTime("from", &f.From)
	parseTime("to_time", &f.To)
	if n, verr := pageLimit(q, 0); verr != nil {
		errs = append(errs, verr)
	} else {
		f.Limit = n
	}
	f.Limit = defaultLimit(f.Limit)
	if c := q.Get("cursor"); c != "" {
		id, ok := decodeCursor(c)
		if !ok {
			errs = append(errs, &engine.ValidationError{Field: "cursor", Message: "is not a cursor this API returned"})
		}
		f.AfterID = id
	}
	if len(errs) > 0 {
		return errs
	}
	sessions, err := s.eng.List(r.Context(), p, f)
	if err != nil {
		return err
	}
	out := verificationList{Items: make([]verification, 0, len(sessions))}
	for i := range sessions {
		out.Items = append(out.Items, toVerification(&sessions[i]))
	}
	if len(sessions) == f.Limit {
		out.NextCursor = encodeCursor(sessions[len(sessions)-1].ID)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func defaultLimit(n int) int {
	if n <= 0 {
		return 50
	}
	return n
}

// Cursors are opaque to clients: the last id of a page, base64url-encoded.
func encodeCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func decodeCursor(c string) (string, bool) {
	if len(c) > 128 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 {
		return "", false
	}
	return string(b), true
}

type devMessage struct {
	ID        string    `json:"id"`
	Channel   string    `json:"channel"`
	To        string    `json:"to"`
	Subject   string    `json:"subject,omitempty"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

func (s *Server) devMessages(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	q, err := query(r)
	if err != nil {
		return err
	}
	limit, verr := pageLimit(q, 50)
	if verr != nil {
		return verr
	}
	msgs, err := s.eng.DevInbox(r.Context(), p, q.Get("to"), limit)
	if err != nil {
		return err
	}
	out := struct {
		Messages []devMessage `json:"messages"`
	}{Messages: make([]devMessage, 0, len(msgs))}
	for _, m := range msgs {
		out.Messages = append(out.Messages, devMessage{ID: m.ID, Channel: m.Channel, To: m.To,
			Subject: m.Subject, Body: m.Body, CreatedAt: m.CreatedAt})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
