package api

import (
	"net/http"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/wire"
)

// mfaRoutes are the caller's MFA devices and recovery codes, and the
// hand-off of `warden login --passkey` to a browser.
func (h *Handler) mfaRoutes() {
	m, a := h.mux, h.auth
	m.HandleFunc("GET /v1/mfa/devices", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*wire.MFADevices, error) {
		return a.ListMFADevices(r.Context(), c)
	})))
	m.HandleFunc("POST /v1/mfa/devices/begin", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.MFAAddRequest) (*wire.MFAAddChallenge, error) {
		return a.BeginAddMFADevice(r.Context(), c, in)
	})))
	m.HandleFunc("POST /v1/mfa/devices/finish", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.MFAAddFinish) (*wire.MFADevice, error) {
		return a.FinishAddMFADevice(r.Context(), c, in)
	})))
	m.HandleFunc("DELETE /v1/mfa/devices/{name}", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (empty, error) {
		return done(a.DeleteMFADevice(r.Context(), c, r.PathValue("name")))
	})))
	m.HandleFunc("POST /v1/mfa/challenge", h.authed(noBody(h, func(r *http.Request, c auth.Caller) (*wire.MFAChallenge, error) {
		return a.BeginMFAChallenge(r.Context(), c)
	})))
	m.HandleFunc("POST /v1/mfa/verify", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.MFAResponse) (*wire.MFAVerified, error) {
		return a.VerifyMFA(r.Context(), c, in)
	})))
	m.HandleFunc("POST /v1/mfa/recovery-codes", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.MFAResponse) (*wire.RecoveryCodes, error) {
		return a.RegenerateRecoveryCodes(r.Context(), c, in)
	})))
	m.HandleFunc("POST /v1/mfa/handoff", h.authed(withBody(h, func(r *http.Request, c auth.Caller, in wire.PasskeyHandoffBegin) (*wire.PasskeyHandoff, error) {
		return a.BeginMFAHandoff(r.Context(), c, in)
	})))
	m.HandleFunc("POST /v1/mfa/handoff/result", open(h, func(r *http.Request, in wire.PasskeyResultRequest) (*wire.MFAResponse, error) {
		in.RemoteAddr = remoteIP(r)
		return a.ResultMFAHandoff(r.Context(), in)
	}))
	m.HandleFunc("POST /v1/passkey/begin", open(h, func(r *http.Request, in wire.PasskeyHandoffBegin) (*wire.PasskeyHandoff, error) {
		in.RemoteAddr = remoteIP(r)
		return a.BeginPasskeyHandoff(r.Context(), in)
	}))
	m.HandleFunc("POST /v1/passkey/result", open(h, func(r *http.Request, in wire.PasskeyResultRequest) (*wire.LoginResponse, error) {
		in.RemoteAddr = remoteIP(r)
		return a.ResultPasskey(r.Context(), in)
	}))
}
