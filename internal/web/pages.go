package web

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/access"
	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
	"github.com/warden-sh/warden/internal/recording"
)

// pageSize is the rows per page of the servers, audit and recordings lists.
const pageSize = 25

func (h *Handler) view(s *session, title, nav string, data any) view {
	return view{Title: title, Nav: nav, User: s.caller.User, CSRF: s.csrf, Data: data}
}

type meData struct {
	User  string
	Roles []string
	// Logins are those the current roles allow that the session's
	// certificate carries; Later, those the roles allow now that only a
	// new sign-in's certificate will carry.
	Logins, Later []string
	Expires       time.Time
	MFADevice     string
	Requests      []*access.Request
}

func (h *Handler) me(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	reqs, err := h.auth.ListAccessRequests(r.Context(), c)
	v := h.view(s, "Who am I", "me", nil)
	if err != nil {
		v.Error = h.message(err)
	}
	var active []*access.Request
	for _, q := range reqs {
		if q.User == c.User && (q.State == access.StatePending || q.State == access.StateApproved) {
			active = append(active, q)
		}
	}
	now, later := h.logins(r.Context(), s, c)
	v.Data = meData{User: c.User, Roles: c.Roles, Logins: now, Later: later, Expires: c.Expires, MFADevice: c.MFADevice, Requests: active}
	h.render(w, http.StatusOK, "me", v)
}

// logins splits the logins c's current roles allow: those the session's
// certificate (issued at sign-in) carries, usable now, and the others,
// usable after signing in again. A login the roles no longer allow is in
// neither: the node would refuse it.
func (h *Handler) logins(ctx context.Context, s *session, c auth.Caller) (now, later []string) {
	allowed, err := h.auth.AllowedLogins(ctx, c)
	if err != nil {
		h.log.Warn("web: allowed logins", "user", c.User, "err", err)
	}
	for _, l := range allowed {
		if slices.Contains(s.logins, l) {
			now = append(now, l)
		} else {
			later = append(later, l)
		}
	}
	return now, later
}

// pager describes one page of a list.
type pager struct {
	From, To, Total int
	Prev, Next      string
}

func pageOf(r *http.Request, total int) (pager, int, int) {
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	last := max(0, (total-1)/pageSize)
	page = min(max(page, 0), last)
	start, end := page*pageSize, min(total, (page+1)*pageSize)
	p := pager{From: start + 1, To: end, Total: total}
	if total == 0 {
		p.From = 0
	}
	link := func(n int) string {
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(n))
		return r.URL.Path + "?" + q.Encode()
	}
	if page > 0 {
		p.Prev = link(page - 1)
	}
	if page < last {
		p.Next = link(page + 1)
	}
	return p, start, end
}

type serversData struct {
	// Logins are the session's logins (Connect buttons).
	Logins []string
	Query  string
	Nodes  []auth.Node
	Page   pager
}

// servers lists the nodes the user may reach (auth.Server.ListNodes, as
// `warden ls`), filtered by the words of the query: key=value words are
// label filters, others match the name, hostname, id or a label.
func (h *Handler) servers(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	filter := map[string]string{}
	var words []string
	for _, f := range strings.Fields(q) {
		if k, v, ok := strings.Cut(f, "="); ok && k != "" {
			filter[k] = v
		} else {
			words = append(words, strings.ToLower(f))
		}
	}
	v := h.view(s, "Servers", "servers", nil)
	nodes, err := h.auth.ListNodes(r.Context(), c, filter)
	if err != nil {
		v.Error = h.message(err)
	}
	if len(words) > 0 {
		nodes = slices.DeleteFunc(nodes, func(n auth.Node) bool { return !nodeMatches(n, words) })
	}
	p, start, end := pageOf(r, len(nodes))
	logins, _ := h.logins(r.Context(), s, c)
	v.Data = serversData{Logins: logins, Query: q, Nodes: nodes[start:end], Page: p}
	h.render(w, http.StatusOK, "servers", v)
}

func nodeMatches(n auth.Node, words []string) bool {
	for _, w := range words {
		hit := strings.Contains(strings.ToLower(n.Name), w) || strings.Contains(strings.ToLower(n.Hostname), w) ||
			strings.HasPrefix(n.ID, w)
		for k, v := range n.Labels {
			hit = hit || strings.Contains(strings.ToLower(k+"="+v), w)
		}
		if !hit {
			return false
		}
	}
	return true
}

type requestsData struct {
	Mine, Others []*access.Request
	Form         url.Values
}

func (h *Handler) requests(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	h.renderRequests(w, r, s, c, http.StatusOK, "", nil)
}

func (h *Handler) renderRequests(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller, status int, errMsg string, form url.Values) {
	v := h.view(s, "Access requests", "requests", nil)
	reqs, err := h.auth.ListAccessRequests(r.Context(), c)
	if err != nil && errMsg == "" {
		errMsg = h.message(err)
	}
	v.Error = errMsg
	d := requestsData{Form: form}
	slices.SortFunc(reqs, func(a, b *access.Request) int { return b.Created.Compare(a.Created) })
	for _, q := range reqs {
		if q.User == c.User {
			d.Mine = append(d.Mine, q)
		} else {
			d.Others = append(d.Others, q)
		}
	}
	v.Data = d
	h.render(w, status, "requests", v)
}

// createRequest files an access request (auth.Server.CreateAccessRequest,
// as `warden request create`).
func (h *Handler) createRequest(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	in := auth.CreateAccessRequest{Reason: r.PostFormValue("reason"), Roles: splitList(r.PostFormValue("roles")),
		Reviewers: splitList(r.PostFormValue("reviewers"))}
	if d := strings.TrimSpace(r.PostFormValue("duration")); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil || dur < 0 {
			h.renderRequests(w, r, s, c, http.StatusBadRequest, "The duration must look like 30m or 2h.", r.PostForm)
			return
		}
		in.Duration = dur
	}
	req, err := h.auth.CreateAccessRequest(r.Context(), c, in)
	if err != nil {
		h.renderRequests(w, r, s, c, statusOf(err), h.message(err), r.PostForm)
		return
	}
	http.Redirect(w, r, Prefix+"requests/"+url.PathEscape(req.ID), http.StatusSeeOther)
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
}

type requestData struct {
	Req *access.Request
	// Mine is whether the signed-in user made the request.
	Mine bool
}

func (h *Handler) request(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	h.renderRequest(w, r, s, c, http.StatusOK, "", "")
}

func (h *Handler) renderRequest(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller, status int, errMsg, notice string) {
	req, err := h.auth.GetAccessRequest(r.Context(), c, r.PathValue("id"))
	if err != nil {
		h.renderError(w, r, s, statusOf(err), h.message(err))
		return
	}
	v := h.view(s, "Access request "+req.ID, "requests", requestData{Req: req, Mine: req.User == c.User})
	v.Error, v.Notice = errMsg, notice
	h.render(w, status, "request", v)
}

// reviewRequest approves or denies with a comment
// (auth.Server.ReviewAccessRequest, as `warden request review`).
func (h *Handler) reviewRequest(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	var approve bool
	switch r.PostFormValue("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		h.renderRequest(w, r, s, c, http.StatusBadRequest, "Choose approve or deny.", "")
		return
	}
	if _, err := h.auth.ReviewAccessRequest(r.Context(), c, r.PathValue("id"), approve, r.PostFormValue("comment")); err != nil {
		h.renderRequest(w, r, s, c, statusOf(err), h.message(err), "")
		return
	}
	http.Redirect(w, r, Prefix+"requests/"+url.PathEscape(r.PathValue("id")), http.StatusSeeOther)
}

type auditData struct {
	Filter url.Values
	// Export links download the filtered set (JSON lines, CSV).
	Export exportURLs
	// Verify is the chain check's result, when asked for (verify=1).
	Verify      *audit.VerifyResult
	VerifyError string
	Events      []audit.Event
	// Next is the link to the following page (events after the last one).
	Next string
}

// timeLayout is the value of an HTML datetime-local input (UTC here).
const timeLayout = "2006-01-02T15:04"

// auditLog searches the audit log (auth.Server.SearchAudit, as `warden
// audit search`), newest first (order=oldest: oldest first), a page at a
// time by sequence number.
func (h *Handler) auditLog(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	f := r.URL.Query()
	v := h.view(s, "Audit log", "audit", nil)
	q, qerr := auditFilter(f)
	if qerr != "" {
		v.Error = qerr
	}
	q.Limit = pageSize + 1
	q.AfterSeq, _ = strconv.ParseInt(f.Get("after"), 10, 64)
	q.BeforeSeq, _ = strconv.ParseInt(f.Get("before"), 10, 64)
	d := auditData{Filter: f, Export: exportLinks(f)}
	if f.Get("verify") != "" {
		d.Verify, d.VerifyError = h.verifyAudit(r, c)
	}
	if v.Error == "" {
		evs, err := h.auth.SearchAudit(r.Context(), c, q)
		if err != nil {
			v.Error = h.message(err)
		}
		if len(evs) > pageSize {
			evs = evs[:pageSize]
			next := url.Values{}
			for k, vals := range f {
				next[k] = vals
			}
			last := strconv.FormatInt(evs[len(evs)-1].Seq, 10)
			if q.Newest {
				next.Set("before", last)
				next.Del("after")
			} else {
				next.Set("after", last)
				next.Del("before")
			}
			d.Next = r.URL.Path + "?" + next.Encode()
		}
		d.Events = evs
	}
	v.Data = d
	h.render(w, http.StatusOK, "audit", v)
}

type recordingsData struct {
	Filter url.Values
	List   []recording.Info
	Page   pager
	// Matches answer a command search (q): each links to its moment.
	Matches []recordingMatch
}

type recordingMatch struct {
	auth.RecordingMatch
	URL string
}

func (h *Handler) recordings(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	f := r.URL.Query()
	v := h.view(s, "Recordings", "recordings", nil)
	rf := auth.RecordingFilter{User: f.Get("user"), Node: f.Get("node")}
	var until time.Time
	for name, dst := range map[string]*time.Time{"since": &rf.Since, "until": &until} {
		if t := f.Get(name); t != "" {
			tt, err := time.Parse(timeLayout, t)
			if err != nil {
				v.Error = "Times look like 2026-11-30T14:05 (UTC)."
			}
			*dst = tt
		}
	}
	var list []recording.Info
	var err error
	if v.Error == "" {
		list, err = h.auth.ListRecordings(r.Context(), c, rf)
		if err != nil {
			v.Error = h.message(err)
		}
	}
	// The login and the end of the time range, which auth's filter does
	// not take, are filtered here.
	if login := f.Get("login"); login != "" || !until.IsZero() {
		list = slices.DeleteFunc(list, func(in recording.Info) bool {
			return (login != "" && in.Login != login) || (!until.IsZero() && in.Start.After(until))
		})
	}
	listed := make(map[string]bool, len(list))
	for _, in := range list {
		listed[in.SessionID] = true
	}
	p, start, end := pageOf(r, len(list))
	d := recordingsData{Filter: f, List: list[start:end], Page: p}
	if q := strings.TrimSpace(f.Get("q")); q != "" && v.Error == "" {
		ms, err := h.auth.SearchRecordings(r.Context(), c, q, 50)
		if err != nil {
			v.Error = h.message(err)
		}
		for _, m := range ms {
			// A match counts if its recording passes the filters.
			if listed[m.SessionID] {
				d.Matches = append(d.Matches, recordingMatch{RecordingMatch: m, URL: playURL(m.SessionID, m.Offset, q)})
			}
		}
	}
	v.Data = d
	h.render(w, http.StatusOK, "recordings", v)
}

// recordingDownload sends a recording as an asciicast file.
func (h *Handler) recordingDownload(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	rs, err := h.auth.OpenRecording(r.Context(), c, r.PathValue("id"))
	if err != nil {
		h.renderError(w, r, s, statusOf(err), h.message(err))
		return
	}
	defer rs.Close()
	w.Header().Set("Content-Type", "application/x-asciicast")
	w.Header().Set("Content-Disposition", `attachment; filename="`+url.PathEscape(rs.Info.SessionID)+`.cast"`)
	w.Header().Set("Content-Length", strconv.FormatInt(rs.Info.Length, 10))
	if _, err := io.CopyN(w, rs, rs.Info.Length); err != nil {
		// An altered recording (checked as it streams) or a read error:
		// the download is cut short, so the browser reports it failed.
		// auth has audited an alteration.
		h.log.Error("download recording", "session", rs.Info.SessionID, "err", err)
		panic(http.ErrAbortHandler)
	}
}
