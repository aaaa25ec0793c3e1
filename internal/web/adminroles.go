package web

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/policy"
)

// The roles page is `warden get roles -o yaml` in a text area and `warden
// apply -f` behind a review: the text is parsed and validated by the same
// policy.ParseRoles as the CLI, the reviewer sees each role's diff against
// the stored one, and Apply stores the changed roles with
// auth.Server.UpsertRole (authorized by the same table row as the API's,
// audited as role.apply). A role left out of the text is kept, as with
// `warden apply`; the Remove button is `warden rm role/NAME`.

// maxRolesText bounds the text of the roles editor (the request body).
const maxRolesText = 1 << 20

type rolesData struct {
	Roles []*policy.Role
	// Text is the editor's content; Rev the revision of the stored roles
	// a review was made against.
	Text string
	Rev  string
	// Problem is a validation error, Lines the text around its line.
	Problem string
	Lines   []numberedLine
	// Changes is the review: one entry per role of the text, then the
	// stored roles the text leaves out (kept).
	Changes   []roleChange
	Unchanged []string
	Kept      []string
	// Pending is whether Apply would change anything.
	Pending bool
}

type numberedLine struct {
	N    int
	Text string
	Bad  bool
}

type roleChange struct {
	Name string
	// Op is "created", "updated" or "unchanged".
	Op   string
	Diff []diffLine
	role *policy.Role
}

// rolesText renders roles as the editor shows them (the `warden get roles
// -o yaml` text) and its revision: a hash of that text, which changes
// whenever a stored role does.
func rolesText(roles []*policy.Role) (string, string, error) {
	var b strings.Builder
	for i, r := range roles {
		if i > 0 {
			b.WriteString("---\n")
		}
		y, err := policy.MarshalRole(r, "yaml")
		if err != nil {
			return "", "", err
		}
		b.Write(y)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return b.String(), hex.EncodeToString(sum[:16]), nil
}

func (h *Handler) adminRoles(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	roles, err := h.auth.ListRoles(r.Context(), c)
	v := h.view(s, "Roles", "admin", nil)
	if err != nil {
		v.Error = h.message(err)
		v.Data = rolesData{}
		h.render(w, statusOf(err), "admin_roles", v)
		return
	}
	text, rev, err := rolesText(roles)
	if err != nil {
		h.renderError(w, r, s, http.StatusInternalServerError, h.message(err))
		return
	}
	v.Data = rolesData{Roles: roles, Text: text, Rev: rev}
	h.render(w, http.StatusOK, "admin_roles", v)
}

// review validates the text against the stored roles: the data of the
// review page, or a problem to show.
func (h *Handler) reviewRoles(r *http.Request, c auth.Caller, text string) (rolesData, error) {
	stored, err := h.auth.ListRoles(r.Context(), c)
	if err != nil {
		return rolesData{}, err
	}
	_, rev, err := rolesText(stored)
	if err != nil {
		return rolesData{}, err
	}
	d := rolesData{Roles: stored, Text: text, Rev: rev}
	if len(text) > maxRolesText {
		d.Problem = fmt.Sprintf("The text is longer than %d KiB.", maxRolesText>>10)
		return d, nil
	}
	proposed, err := policy.ParseRoles([]byte(text))
	if err != nil {
		d.Problem, d.Lines = err.Error(), linesAround(text, err.Error())
		return d, nil
	}
	byName := map[string]*policy.Role{}
	for _, r := range stored {
		byName[r.Metadata.Name] = r
	}
	inText := map[string]bool{}
	for _, p := range proposed {
		inText[p.Metadata.Name] = true
		newY, err := policy.MarshalRole(p, "yaml")
		if err != nil {
			return rolesData{}, err
		}
		ch := roleChange{Name: p.Metadata.Name, Op: "created", role: p}
		var oldY []byte
		if old := byName[p.Metadata.Name]; old != nil {
			if oldY, err = policy.MarshalRole(old, "yaml"); err != nil {
				return rolesData{}, err
			}
			ch.Op = "updated"
			if string(oldY) == string(newY) {
				ch.Op = "unchanged"
			}
		}
		if ch.Op == "unchanged" {
			d.Unchanged = append(d.Unchanged, ch.Name)
			continue
		}
		ch.Diff = diffLines(string(oldY), string(newY))
		d.Pending = true
		d.Changes = append(d.Changes, ch)
	}
	for _, r := range stored {
		if !inText[r.Metadata.Name] {
			d.Kept = append(d.Kept, r.Metadata.Name)
		}
	}
	return d, nil
}

var lineRE = regexp.MustCompile(`\bline (\d+)\b`)

// linesAround is the text around the line an error names (none if it
// names none): three lines either side, the named one marked.
func linesAround(text, msg string) []numberedLine {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return nil
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return nil
	}
	lines := strings.Split(text, "\n")
	if n < 1 || n > len(lines) {
		return nil
	}
	var out []numberedLine
	for i := max(1, n-3); i <= min(len(lines), n+3); i++ {
		out = append(out, numberedLine{N: i, Text: strings.TrimRight(lines[i-1], "\r"), Bad: i == n})
	}
	return out
}

// adminReviewRoles shows what Apply would do with the text: its
// validation errors, or each role's diff.
func (h *Handler) adminReviewRoles(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	d, err := h.reviewRoles(r, c, r.PostFormValue("yaml"))
	h.renderRolesReview(w, s, d, err, http.StatusOK, "")
}

func (h *Handler) renderRolesReview(w http.ResponseWriter, s *session, d rolesData, err error, status int, msg string) {
	v := h.view(s, "Roles", "admin", d)
	switch {
	case err != nil:
		v.Error, status = h.message(err), statusOf(err)
	case msg != "":
		v.Error = msg
	case d.Problem != "":
		status = http.StatusUnprocessableEntity
	}
	h.render(w, status, "admin_roles", v)
}

// adminApplyRoles stores the reviewed roles that differ from the stored
// ones, unless a stored role changed since the review (another admin, or
// `warden apply`): then the review is shown again, against the roles as
// they are now.
func (h *Handler) adminApplyRoles(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	d, err := h.reviewRoles(r, c, r.PostFormValue("yaml"))
	if err != nil || d.Problem != "" {
		h.renderRolesReview(w, s, d, err, http.StatusOK, "")
		return
	}
	if !equalToken(d.Rev, r.PostFormValue("rev")) {
		h.renderRolesReview(w, s, d, nil, http.StatusConflict,
			"The roles changed since your review (another admin or warden apply): nothing was applied. Review the changes below against the roles as they are now, then apply again.")
		return
	}
	var done []string
	for _, ch := range d.Changes {
		if err := h.auth.UpsertRole(r.Context(), c, ch.role); err != nil {
			d, _ := h.reviewRoles(r, c, r.PostFormValue("yaml"))
			msg := h.message(err)
			if len(done) > 0 {
				msg = "Applied " + strings.Join(done, ", ") + ", then: " + msg
			}
			h.renderRolesReview(w, s, d, nil, statusOf(err), msg)
			return
		}
		done = append(done, fmt.Sprintf("role %q %s", ch.Name, ch.Op))
	}
	roles, err := h.auth.ListRoles(r.Context(), c)
	if err != nil {
		h.renderRolesReview(w, s, d, err, http.StatusOK, "")
		return
	}
	text, rev, err := rolesText(roles)
	if err != nil {
		h.renderError(w, r, s, http.StatusInternalServerError, h.message(err))
		return
	}
	v := h.view(s, "Roles", "admin", rolesData{Roles: roles, Text: text, Rev: rev})
	v.Notice = "Nothing to apply: the text matches the stored roles."
	if len(done) > 0 {
		v.Notice = "Applied: " + strings.Join(done, ", ") + "."
	}
	h.render(w, http.StatusOK, "admin_roles", v)
}

// adminDeleteRole removes a role (`warden rm role/NAME`).
func (h *Handler) adminDeleteRole(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	if err := h.auth.DeleteRole(r.Context(), c, r.PathValue("name")); err != nil {
		roles, _ := h.auth.ListRoles(r.Context(), c)
		text, rev, _ := rolesText(roles)
		v := h.view(s, "Roles", "admin", rolesData{Roles: roles, Text: text, Rev: rev})
		v.Error = h.message(err)
		h.render(w, statusOf(err), "admin_roles", v)
		return
	}
	http.Redirect(w, r, Prefix+"admin/roles", http.StatusSeeOther)
}
