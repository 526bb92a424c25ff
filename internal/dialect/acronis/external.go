package acronis

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/otpd/otpd/internal/engine"
)

// The external-login page. GET /api/2/idp/external-login?ott=…&targetURI=… checks the token
// (without spending it) and the target against the tenant's allow-list, and serves a page whose
// form posts both back; a script submits it at once, a button does when scripts are off. The
// POST redeems the token, sets the session cookie and answers 303 to the target. Redeeming on
// the POST rather than the GET keeps link scanners and browser prefetching, which follow GET
// links in mail, from spending the token; the target is checked on both requests, before the
// token is spent, and the redirect goes to the URL as it was checked.

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Title}}</title></head>
<body style="font-family:sans-serif;max-width:32em;margin:4em auto">
{{if .Form}}<form id="login" method="post" action="/api/2/idp/external-login">
<input type="hidden" name="ott" value="{{.OTT}}"><input type="hidden" name="targetURI" value="{{.Target}}">
<p>Signing you in…</p><noscript><button type="submit">Continue</button></noscript></form>
<script nonce="{{.Nonce}}">document.getElementById("login").submit();</script>
{{else}}<h1>{{.Title}}</h1><p>{{.Message}}</p>{{end}}
</body></html>
`))

type page struct {
	Title, Message     string
	Form               bool
	OTT, Target, Nonce string
}

// servePage writes an HTML page with headers that keep it (and the token in it) out of caches,
// referrers and frames, and allow only its own nonce'd script.
func servePage(w http.ResponseWriter, status int, p page) {
	h := w.Header()
	csp := "default-src 'none'; base-uri 'none'; frame-ancestors 'none'"
	if p.Form {
		csp += "; script-src 'nonce-" + p.Nonce + "'"
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, p)
}

func errorPage(w http.ResponseWriter, status int, title, msg string) {
	servePage(w, status, page{Title: title, Message: msg})
}

const (
	invalidLinkTitle = "This sign-in link cannot be used"
	invalidLinkMsg   = "The link is invalid, has expired or was used already. Ask for a new one."
	badTargetTitle   = "Sign-in target not allowed"
	badTargetMsg     = "The address this link would take you to is not on the list this service allows."
)

// linkParams reads ott and targetURI from a query string or form, refusing repeats.
func linkParams(v url.Values) (ott, target string, ok bool) {
	if len(v["ott"]) != 1 || len(v["targetURI"]) != 1 {
		return "", "", false
	}
	return v.Get("ott"), v.Get("targetURI"), v.Get("ott") != "" && v.Get("targetURI") != ""
}

// checkLink resolves the token's tenant and the allowed target; it writes the error page and
// returns ok false when either fails.
func (h *handler) checkLink(w http.ResponseWriter, r *http.Request, ott, target string) (string, bool) {
	tenant, err := h.eng.OneTimeTokenTenant(r.Context(), ott)
	if errors.Is(err, engine.ErrUnauthenticated) {
		errorPage(w, http.StatusUnauthorized, invalidLinkTitle, invalidLinkMsg)
		return "", false
	}
	if err != nil {
		h.log.Error("acronis: external login", "err", err)
		errorPage(w, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return "", false
	}
	allowed, err := h.eng.CheckRedirectTarget(r.Context(), tenant, target)
	if errors.Is(err, engine.ErrRedirectNotAllowed) {
		errorPage(w, http.StatusBadRequest, badTargetTitle, badTargetMsg)
		return "", false
	}
	if err != nil {
		h.log.Error("acronis: external login", "err", err)
		errorPage(w, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return "", false
	}
	return allowed, true
}

func (h *handler) externalLoginPage(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	ott, target, ok := linkParams(q)
	if err != nil || !ok {
		errorPage(w, http.StatusBadRequest, invalidLinkTitle, "The link must carry exactly one ott and one targetURI.")
		return
	}
	allowed, ok := h.checkLink(w, r, ott, target)
	if !ok {
		return
	}
	var nonce [18]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		h.log.Error("acronis: nonce", "err", err)
		errorPage(w, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	servePage(w, http.StatusOK, page{Title: "Signing in", Form: true, OTT: ott, Target: allowed,
		Nonce: base64.RawURLEncoding.EncodeToString(nonce[:])})
}

func (h *handler) externalLogin(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
		errorPage(w, http.StatusUnsupportedMediaType, invalidLinkTitle, "The sign-in form was not sent as a form.")
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		errorPage(w, http.StatusRequestEntityTooLarge, invalidLinkTitle, "The sign-in form is too large.")
		return
	}
	form, err := url.ParseQuery(string(raw))
	ott, target, ok := linkParams(form)
	if err != nil || !ok {
		errorPage(w, http.StatusBadRequest, invalidLinkTitle, "The sign-in form must carry exactly one ott and one targetURI.")
		return
	}
	allowed, ok := h.checkLink(w, r, ott, target)
	if !ok {
		return
	}
	red, err := h.eng.RedeemOneTimeToken(r.Context(), "", ott, engine.OTTPurposeLogin) // the token is the credential
	if errors.Is(err, engine.ErrUnauthenticated) {
		errorPage(w, http.StatusUnauthorized, invalidLinkTitle, invalidLinkMsg)
		return
	}
	if err != nil {
		h.log.Error("acronis: external login", "err", err)
		errorPage(w, http.StatusInternalServerError, "Something went wrong", "Please try again later.")
		return
	}
	h.setSession(w, r, red)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, allowed, http.StatusSeeOther)
}
