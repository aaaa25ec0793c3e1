package web

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"rsc.io/qr"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/identity"
	"github.com/warden-sh/warden/internal/lock"
)

// The admin pages call the same auth.Server methods as `warden users`,
// `warden lock` and `warden tokens`: auth authorizes each (the caller's
// roles must allow the admin operation) and audits it. The pages are
// shown to everyone; a user without the rights sees auth's refusal.

type usersData struct {
	Users []auth.UserInfo
	// Bots are listed apart from people: they have no password or MFA
	// to reset, and `warden bots` manages them.
	Bots []auth.UserInfo
}

func (h *Handler) adminUsers(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	v := h.view(s, "Users", "admin", nil)
	users, err := h.auth.ListUsers(r.Context(), c)
	if err != nil {
		v.Error = h.message(err)
	}
	var d usersData
	for _, u := range users {
		if u.Type == identity.TypeBot {
			d.Bots = append(d.Bots, u)
		} else {
			d.Users = append(d.Users, u)
		}
	}
	v.Data = d
	h.render(w, statusFor(err), "admin_users", v)
}

// statusFor is the status of a page that shows err in place of its list.
func statusFor(err error) int {
	if err == nil {
		return http.StatusOK
	}
	return statusOf(err)
}

type inviteShown struct {
	Invite *auth.InviteResult
	Reset  bool
	QR     template.HTML
}

// adminAddUser creates a user (`warden users add`) and shows the invite
// link with its QR code, once.
func (h *Handler) adminAddUser(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	inv, err := h.auth.CreateUser(r.Context(), c, auth.CreateUserRequest{Name: strings.TrimSpace(r.PostFormValue("name")),
		Roles: splitList(r.PostFormValue("roles")), Logins: splitList(r.PostFormValue("logins"))})
	h.showInvite(w, r, s, c, inv, false, err)
}

// adminResetUser resets a user (`warden users reset`): new password and
// TOTP by a new invite link.
func (h *Handler) adminResetUser(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	inv, err := h.auth.ResetUser(r.Context(), c, r.PathValue("name"))
	h.showInvite(w, r, s, c, inv, true, err)
}

func (h *Handler) showInvite(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller, inv *auth.InviteResult, reset bool, err error) {
	if err != nil {
		users, _ := h.auth.ListUsers(r.Context(), c)
		v := h.view(s, "Users", "admin", usersData{Users: users})
		v.Error = h.message(err)
		h.render(w, statusOf(err), "admin_users", v)
		return
	}
	svg, err := qrSVG(inv.URL)
	if err != nil {
		h.renderError(w, r, s, http.StatusInternalServerError, h.message(err))
		return
	}
	h.render(w, http.StatusOK, "admin_invite", h.view(s, "Invite", "admin", inviteShown{Invite: inv, Reset: reset, QR: svg}))
}

// qrSVG draws text as a QR code in inline SVG (no image URL to carry the
// invite's secret, no style attribute for the CSP to refuse). Only
// numbers come from the code; text is not in the markup.
func qrSVG(text string) (template.HTML, error) {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return "", fmt.Errorf("QR code: %w", err)
	}
	const quiet = 4
	n := code.Size + 2*quiet
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="qr-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" shape-rendering="crispEdges" role="img" aria-label="QR code of the invite link">`, n, n, n*5, n*5)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="`, n, n)
	for y := 0; y < code.Size; y++ {
		for x := 0; x < code.Size; x++ {
			if code.Black(x, y) {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x+quiet, y+quiet)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String()), nil
}

// adminUserRoles sets a user's roles (`warden users update --roles`):
// auth voids the certificates and browser sessions of a user who loses a
// role.
func (h *Handler) adminUserRoles(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	if _, err := h.auth.UpdateUser(r.Context(), c, r.PathValue("name"), auth.UpdateUserRequest{Roles: splitList(r.PostFormValue("roles"))}); err != nil {
		users, _ := h.auth.ListUsers(r.Context(), c)
		v := h.view(s, "Users", "admin", usersData{Users: users})
		v.Error = h.message(err)
		h.render(w, statusOf(err), "admin_users", v)
		return
	}
	http.Redirect(w, r, Prefix+"admin/users", http.StatusSeeOther)
}

func (h *Handler) adminDeleteUser(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	if err := h.auth.DeleteUser(r.Context(), c, r.PathValue("name")); err != nil {
		users, _ := h.auth.ListUsers(r.Context(), c)
		v := h.view(s, "Users", "admin", usersData{Users: users})
		v.Error = h.message(err)
		h.render(w, statusOf(err), "admin_users", v)
		return
	}
	http.Redirect(w, r, Prefix+"admin/users", http.StatusSeeOther)
}

type locksData struct {
	Locks    []*lock.Lock
	Warnings []string
	// Pick offers the names a lock may target (the form's pickers): those
	// the admin may list.
	Pick lockPicks
}

type lockPicks struct {
	Users, Roles, Logins, Nodes []string
}

// lockPicks lists the users, roles, logins and nodes a lock may name, each
// through its own authorized listing: what the caller may not list is not
// offered (and may still be typed).
func (h *Handler) lockPicks(r *http.Request, c auth.Caller) lockPicks {
	var p lockPicks
	logins := map[string]bool{}
	if users, err := h.auth.ListUsers(r.Context(), c); err == nil {
		for _, u := range users {
			p.Users = append(p.Users, u.Name)
			for _, l := range u.Traits["logins"] {
				logins[l] = true
			}
		}
	}
	if roles, err := h.auth.ListRoles(r.Context(), c); err == nil {
		for _, ro := range roles {
			p.Roles = append(p.Roles, ro.Metadata.Name)
		}
	}
	if nodes, err := h.auth.ListNodes(r.Context(), c, nil); err == nil {
		for _, n := range nodes[:min(len(nodes), 1000)] {
			p.Nodes = append(p.Nodes, n.Name)
		}
	}
	for l := range logins {
		p.Logins = append(p.Logins, l)
	}
	slices.Sort(p.Logins)
	return p
}

func (h *Handler) adminLocks(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	h.renderLocks(w, r, s, c, nil, nil)
}

func (h *Handler) renderLocks(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller, warnings []string, failed error) {
	v := h.view(s, "Locks", "admin", nil)
	locks, err := h.auth.ListLocks(r.Context(), c)
	status := statusFor(err)
	if err != nil {
		v.Error = h.message(err)
	}
	if failed != nil {
		v.Error, status = h.message(failed), statusOf(failed)
	}
	v.Data = locksData{Locks: locks, Warnings: warnings, Pick: h.lockPicks(r, c)}
	h.render(w, status, "admin_locks", v)
}

// adminCreateLock locks a target (`warden lock`).
func (h *Handler) adminCreateLock(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	f := func(k string) string { return strings.TrimSpace(r.PostFormValue(k)) }
	req := auth.CreateLockRequest{Target: lock.Target{User: f("user"), Role: f("role"), Login: f("login"), Node: f("node"),
		MFADevice: f("mfa_device")}, Message: f("message")}
	if ttl := f("ttl"); ttl != "" {
		d, err := time.ParseDuration(ttl)
		if err != nil || d <= 0 {
			h.renderLocks(w, r, s, c, nil, fmt.Errorf("%w: duration looks like 30m or 2h", auth.ErrBadRequest))
			return
		}
		req.TTL = d
	}
	res, err := h.auth.CreateLock(r.Context(), c, req)
	if err != nil {
		h.renderLocks(w, r, s, c, nil, err)
		return
	}
	h.renderLocks(w, r, s, c, res.Warnings, nil)
}

func (h *Handler) adminDeleteLock(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	if err := h.auth.DeleteLock(r.Context(), c, r.PathValue("id")); err != nil {
		h.renderLocks(w, r, s, c, nil, err)
		return
	}
	http.Redirect(w, r, Prefix+"admin/locks", http.StatusSeeOther)
}

type tokensData struct {
	Tokens []auth.Token
	// New is a token just created, with the command to run on the server.
	New     *auth.TokenResult
	Command string
}

func (h *Handler) adminTokens(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	h.renderTokens(w, r, s, c, tokensData{}, nil)
}

func (h *Handler) renderTokens(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller, d tokensData, failed error) {
	v := h.view(s, "Join tokens", "admin", nil)
	toks, err := h.auth.ListTokens(r.Context(), c)
	status := statusFor(err)
	if err != nil {
		v.Error = h.message(err)
	}
	if failed != nil {
		v.Error, status = h.message(failed), statusOf(failed)
	}
	d.Tokens = toks
	v.Data = d
	h.render(w, status, "admin_tokens", v)
}

// adminCreateToken makes a node join token (`warden tokens add`) and shows
// the exact command to run on the server, once.
func (h *Handler) adminCreateToken(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	ttl := 30 * time.Minute
	if t := strings.TrimSpace(r.PostFormValue("ttl")); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			h.renderTokens(w, r, s, c, tokensData{}, fmt.Errorf("%w: duration looks like 30m or 2h", auth.ErrBadRequest))
			return
		}
		ttl = d
	}
	tok, err := h.auth.CreateToken(r.Context(), c, auth.CreateTokenRequest{Type: "node", TTL: ttl, Reusable: r.PostFormValue("reusable") == "1"})
	if err != nil {
		h.renderTokens(w, r, s, c, tokensData{}, err)
		return
	}
	sum := sha256.Sum256(h.auth.TLSCACert().Raw)
	// The same commands as `warden tokens add`: the token goes into a
	// file, not on the command line, where ps shows it to every user.
	cmd := fmt.Sprintf("(umask 077; echo %s > join-token)\nwarden start --services node --proxy %s --token-file join-token --ca-pin sha256:%s --labels env=dev",
		tok.Token, r.Host, hex.EncodeToString(sum[:]))
	h.renderTokens(w, r, s, c, tokensData{New: tok, Command: cmd}, nil)
}

func (h *Handler) adminDeleteToken(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	if err := h.auth.DeleteToken(r.Context(), c, r.PathValue("hint")); err != nil {
		h.renderTokens(w, r, s, c, tokensData{}, err)
		return
	}
	http.Redirect(w, r, Prefix+"admin/tokens", http.StatusSeeOther)
}
