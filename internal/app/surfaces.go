package app

import (
	"github.com/otpd/otpd/internal/dialect/acronis"
	"github.com/otpd/otpd/internal/dialect/bsg"
	"github.com/otpd/otpd/internal/dialect/haventec"
	"github.com/otpd/otpd/internal/dialect/openiam"
	"github.com/otpd/otpd/internal/dialect/scim"
)

// mountSurfaces mounts the vendor dialects on the API server. Each surface adds its one line
// here; its package holds the translation, the engine holds the rules.
func (a *App) mountSurfaces() error {
	acronis.Mount(a.API, a.Engine, a.Log)  // one-time login tokens, OAuth core
	openiam.Mount(a.API, a.Engine, a.Log)  // self-service codes
	haventec.Mount(a.API, a.Engine, a.Log) // user OTP by introspection
	bsg.Mount(a.API, a.Engine, a.Log)      // BSG 2FA verifications and templates
	scim.Mount(a.API, a.Engine, a.Log)     // SCIM 2.0 users and OTP devices (Soffid)
	return nil
}
