package api

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/otpd/otpd/internal/engine"
	"github.com/otpd/otpd/internal/otpauth"
	"github.com/otpd/otpd/internal/store"
)

// OTP devices of users: /v1/users/{id}/devices…, where {id} is the user's id or
// "login:<login>".

func init() { routeSets = append(routeSets, (*Server).deviceRoutes) }

func (s *Server) deviceRoutes() []route {
	const base = "/v1/users/{id}/devices"
	return []route{
		{"POST", base, true, s.enrollDevice},
		{"GET", base, true, s.listDevices},
		{"GET", base + "/{device_id}", true, s.getDevice},
		{"PATCH", base + "/{device_id}", true, s.patchDevice},
		{"DELETE", base + "/{device_id}", true, s.deleteDevice},
		{"POST", base + "/{device_id}/challenge", true, s.challengeDevice},
		{"POST", base + "/{device_id}/verify", true, s.verifyDevice},
		{"POST", base + "/{device_id}/resync", true, s.resyncDevice},
		{"POST", base + "/{device_id}/unlock", true, s.unlockDevice},
	}
}

// Device statuses on the native wire.
var deviceStatusWords = map[string]string{
	store.DeviceCreated: "created", store.DeviceValidated: "validated",
	store.DeviceDisabled: "disabled", store.DeviceLocked: "locked",
}

type device struct {
	ID            string     `json:"id"`
	Number        int64      `json:"number"`
	UserID        string     `json:"user_id"`
	User          string     `json:"user"`
	Type          string     `json:"type"`
	Name          string     `json:"name"`
	Status        string     `json:"status"`
	Fails         int        `json:"fails"`
	AttemptsLeft  int        `json:"attempts_left"`
	LockedUntil   *time.Time `json:"locked_until,omitempty"`
	Algorithm     string     `json:"algorithm,omitempty"`
	Digits        int        `json:"digits,omitempty"`
	PeriodSeconds int        `json:"period_seconds,omitempty"`
	Phone         string     `json:"phone,omitempty"`
	Email         string     `json:"email,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	LastUsedAt    *time.Time `json:"last_used_at,omitempty"`
	ValidatedAt   *time.Time `json:"validated_at,omitempty"`
	// Set once, when otpd generated the seed of a TOTP/HOTP device.
	URI   string `json:"uri,omitempty"`
	QRPNG string `json:"qr_png,omitempty"`
}

func toDevice(d *engine.Device) device {
	out := device{ID: d.ID, Number: d.Number, UserID: d.UserID, User: d.UserLogin, Type: d.Type, Name: d.Name,
		Status: deviceStatusWords[d.State], Fails: d.Fails, AttemptsLeft: d.AttemptsLeft, Algorithm: d.Algorithm,
		Digits: d.Digits, PeriodSeconds: int(d.Period / time.Second), Phone: d.Phone, Email: d.Email,
		CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, LastUsedAt: d.LastUsedAt, ValidatedAt: d.ValidatedAt}
	if d.Locked() {
		out.LockedUntil = d.LockedUntil
	}
	return out
}

// userRef reads {id}: a user id, or "login:<login>".
func userRef(r *http.Request) engine.UserRef {
	id := r.PathValue("id")
	if login, ok := strings.CutPrefix(id, "login:"); ok {
		return engine.UserRef{Login: login}
	}
	return engine.UserRef{ID: id}
}

func devRef(r *http.Request) engine.DeviceRef {
	return engine.DeviceRef{ID: r.PathValue("device_id"), User: userRef(r)}
}

// deviceErr maps the device outcomes the shared problem table does not know.
func deviceErr(err error) error {
	switch {
	case errors.Is(err, engine.ErrDeviceLocked):
		return problem(http.StatusConflict, "conflict", "The device is locked; it receives no challenge until it is unlocked.")
	case errors.Is(err, engine.ErrDeviceDisabled):
		return problem(http.StatusConflict, "conflict", "The device is disabled.")
	}
	return err
}

type enrollRequest struct {
	Type          string `json:"type"`
	Name          string `json:"name"`
	Algorithm     string `json:"algorithm"`
	Digits        int    `json:"digits"`
	PeriodSeconds int    `json:"period_seconds"`
	Secret        string `json:"secret"`
	Phone         string `json:"phone"`
	Email         string `json:"email"`
	PIN           string `json:"pin"`
}

func (s *Server) enrollDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req enrollRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	er := engine.EnrollRequest{User: userRef(r), Type: req.Type, Name: req.Name, Algorithm: req.Algorithm,
		Digits: req.Digits, Period: seconds(req.PeriodSeconds), Phone: req.Phone,
		Email: req.Email, PIN: req.PIN, ClientIP: clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.trusted)}
	if req.Secret != "" {
		seed, err := otpauth.DecodeSecret(req.Secret)
		if err != nil {
			return &engine.ValidationError{Field: "secret", Message: "must be a base32 seed"}
		}
		er.Secret = seed
	}
	en, err := s.eng.EnrollDevice(r.Context(), p, er)
	if err != nil {
		return err
	}
	out := toDevice(en.Device)
	if en.URI != "" {
		out.URI, out.QRPNG = en.URI, base64.StdEncoding.EncodeToString(en.QR)
	}
	w.Header().Set("Location", "/v1/users/"+en.Device.UserID+"/devices/"+en.Device.ID)
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	ds, err := s.eng.UserDevices(r.Context(), p, userRef(r))
	if err != nil {
		return err
	}
	out := struct {
		Items []device `json:"items"`
	}{Items: make([]device, 0, len(ds))}
	for i := range ds {
		out.Items = append(out.Items, toDevice(&ds[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	d, err := s.eng.GetDevice(r.Context(), p, devRef(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toDevice(d))
	return nil
}

type patchDeviceRequest struct {
	Name   *string `json:"name"`
	Status *string `json:"status"`
	Phone  *string `json:"phone"`
	Email  *string `json:"email"`
	PIN    *string `json:"pin"`
}

func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req patchDeviceRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	c := engine.DeviceChanges{Name: req.Name, Phone: req.Phone, Email: req.Email, PIN: req.PIN}
	if req.Status != nil {
		var letter string
		for l, word := range deviceStatusWords {
			if word == *req.Status {
				letter = l
			}
		}
		if letter == "" {
			return &engine.ValidationError{Field: "status", Message: "must be created, validated, disabled or locked"}
		}
		c.Status = &letter
	}
	d, err := s.eng.UpdateDevice(r.Context(), p, devRef(r), c)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toDevice(d))
	return nil
}

func (s *Server) deleteDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	if err := s.eng.DeleteDevice(r.Context(), p, devRef(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type challengeAnswer struct {
	DeviceID string `json:"device_id"`
	// Sent: a code went out (SMS and EMAIL devices); false for TOTP, HOTP and PIN devices,
	// whose code the user already has.
	Sent      bool       `json:"sent"`
	Target    string     `json:"target"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	SendsLeft *int       `json:"sends_left,omitempty"`
}

func (s *Server) challengeDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	// client_ip is the end user's address, for the per-IP send limit (the caller is a backend).
	var req struct {
		ClientIP string `json:"client_ip"`
	}
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	ch, err := s.eng.ChallengeDevice(r.Context(), p, devRef(r), req.ClientIP)
	if err != nil {
		return deviceErr(err)
	}
	out := challengeAnswer{DeviceID: ch.Device.ID, Target: ch.Device.TargetLabel()}
	if ch.Session != nil {
		left := ch.Session.SendsLeft()
		out.Sent, out.ExpiresAt, out.SendsLeft = true, &ch.Session.ExpiresAt, &left
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type verifyAnswer struct {
	Success      bool `json:"success"`
	Locked       bool `json:"locked"`
	AttemptsLeft int  `json:"attempts_left"`
}

func (s *Server) verifyDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct {
		Code string `json:"code"`
	}
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	res, err := s.eng.VerifyDevice(r.Context(), p, devRef(r), req.Code)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, verifyAnswer{Success: res.Success, Locked: res.Locked, AttemptsLeft: res.Device.AttemptsLeft})
	return nil
}

func (s *Server) resyncDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct {
		Code1 string `json:"code1"`
		Code2 string `json:"code2"`
	}
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	res, err := s.eng.ResyncDevice(r.Context(), p, devRef(r), req.Code1, req.Code2)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, verifyAnswer{Success: res.Success, Locked: res.Locked, AttemptsLeft: res.Device.AttemptsLeft})
	return nil
}

func (s *Server) unlockDevice(w http.ResponseWriter, r *http.Request, p engine.Principal) error {
	var req struct{}
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	d, err := s.eng.UnlockDevice(r.Context(), p, devRef(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toDevice(d))
	return nil
}
