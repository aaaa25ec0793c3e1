package web

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warden-sh/warden/internal/audit"
	"github.com/warden-sh/warden/internal/auth"
)

// auditFilter reads the audit page's filter (user, type, node, text, a
// time range in UTC, order) into a query; the second value is a problem
// with it to show.
func auditFilter(f url.Values) (audit.Query, string) {
	q := audit.Query{User: f.Get("user"), Type: f.Get("type"), Node: f.Get("node"), Text: f.Get("text")}
	var problem string
	for name, dst := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		if t := f.Get(name); t != "" {
			tt, err := time.Parse(timeLayout, t)
			if err != nil {
				problem = "Times look like 2026-11-30T14:05 (UTC)."
			}
			*dst = tt
		}
	}
	q.Newest = f.Get("order") != "oldest"
	return q, problem
}

// exportURLs are the links of the audit page's actions on the filter:
// the exports and the chain check (the page again, with verify=1).
type exportURLs struct{ JSONL, CSV, Verify string }

// exportLinks are the export URLs of a filter: the whole filtered set,
// not one page of it.
func exportLinks(f url.Values) exportURLs {
	q := url.Values{}
	for _, k := range []string{"user", "type", "node", "text", "since", "until", "order"} {
		if v := f.Get(k); v != "" {
			q.Set(k, v)
		}
	}
	link := func(format string) string {
		q.Set("format", format)
		return Prefix + "audit/export?" + q.Encode()
	}
	out := exportURLs{JSONL: link("jsonl"), CSV: link("csv")}
	q.Del("format")
	q.Set("verify", "1")
	out.Verify = Prefix + "audit?" + q.Encode()
	return out
}

// auditExport streams every event the filter matches as JSON lines or
// CSV. It reads the log a page (audit.MaxLimit events) at a time through
// auth.Server.SearchAudit, the call behind `warden audit search`, so each
// page is authorized, and holds no more than one page in memory.
func (h *Handler) auditExport(w http.ResponseWriter, r *http.Request, s *session, c auth.Caller) {
	f := r.URL.Query()
	q, problem := auditFilter(f)
	if problem != "" {
		h.renderError(w, r, s, http.StatusBadRequest, problem)
		return
	}
	format := f.Get("format")
	if format != "jsonl" && format != "csv" {
		h.renderError(w, r, s, http.StatusBadRequest, "The export format is jsonl or csv.")
		return
	}
	q.Limit = exportPage
	page, err := h.auth.SearchAudit(r.Context(), c, q)
	if err != nil {
		h.renderError(w, r, s, statusOf(err), h.message(err))
		return
	}
	name := "audit-" + h.now().UTC().Format("20060102T150405Z") + "." + format
	hd := w.Header()
	if format == "csv" {
		hd.Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		hd.Set("Content-Type", "application/jsonl; charset=utf-8")
	}
	hd.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	bw := bufio.NewWriterSize(w, 64<<10)
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(bw)
		_ = cw.Write(csvHeader)
	}
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for {
		for _, ev := range page {
			if cw != nil {
				err = cw.Write(csvRow(ev))
			} else {
				err = enc.Encode(ev)
			}
			if err != nil {
				h.log.Warn("web: audit export", "err", err)
				return
			}
		}
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1].Seq
		if q.Newest {
			q.BeforeSeq = last
		} else {
			q.AfterSeq = last
		}
		if cw != nil {
			cw.Flush()
		}
		if page, err = h.auth.SearchAudit(r.Context(), c, q); err != nil {
			// Headers are sent: cut the download short, so the browser
			// reports it failed rather than keeping half a log.
			h.log.Error("web: audit export", "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	if cw != nil {
		cw.Flush()
	}
	if err := bw.Flush(); err != nil {
		h.log.Warn("web: audit export", "err", err)
	}
}

// exportPage is the events an export reads at a time (tests lower it).
var exportPage = audit.MaxLimit

var csvHeader = []string{"seq", "time", "event", "code", "user", "login", "node", "session_id", "remote_addr", "success", "error", "fields", "id", "hash"}

func csvRow(ev audit.Event) []string {
	fields := ""
	if len(ev.Fields) > 0 {
		b, err := json.Marshal(ev.Fields)
		if err == nil {
			fields = string(b)
		}
	}
	row := []string{strconv.FormatInt(ev.Seq, 10), ev.Time.UTC().Format(time.RFC3339Nano), ev.Event, ev.Code, ev.User, ev.Login,
		ev.Node, ev.SessionID, ev.RemoteAddr, strconv.FormatBool(ev.Success), ev.Error, fields, ev.ID, ev.Hash}
	for i, cell := range row {
		row[i] = csvSafe(cell)
	}
	return row
}

// csvSafe keeps a spreadsheet from reading a cell as a formula: a cell
// that begins with = + - @ (or a tab or carriage return, which some
// programs skip before looking) gets a leading apostrophe.
func csvSafe(cell string) string {
	if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
		return "'" + cell
	}
	return cell
}

// verifyAudit checks the whole chain and the signed checkpoints
// (auth.Server.VerifyAudit, as `warden audit verify`).
func (h *Handler) verifyAudit(r *http.Request, c auth.Caller) (*audit.VerifyResult, string) {
	res, err := h.auth.VerifyAudit(r.Context(), c)
	if err != nil {
		return nil, h.message(err)
	}
	return res, ""
}
