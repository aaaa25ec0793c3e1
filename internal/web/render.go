package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"
)

// view is what every page template receives.
type view struct {
	Title string
	// Nav is the active section of the menu.
	Nav string
	// User is the signed-in user ("" on the sign-in and invite pages).
	User string
	// CSRF is the token the page's forms carry.
	CSRF   string
	Error  string
	Notice string
	Data   any
	// StyleNonce admits the <style> elements of the page's script (the
	// terminal's), in the page's Content-Security-Policy.
	StyleNonce string
}

func (h *Handler) loadTemplates() error {
	funcs := template.FuncMap{
		"asset": h.asset,
		"time":  fmtTime,
		"until": func(t time.Time) string { return fmtDuration(t.Sub(h.now())) },
		"join":  strings.Join,
		"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"json": func(v any) string {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return err.Error()
			}
			return string(b)
		},
		"labels": func(m map[string]string) []string {
			out := make([]string, 0, len(m))
			for k, v := range m {
				out = append(out, k+"="+v)
			}
			sort.Strings(out)
			return out
		},
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return err
	}
	h.pages = map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || base == "partials" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return fmt.Errorf("web: parse %s: %w", n, err)
		}
		h.pages[base] = t
	}
	return nil
}

// render writes a page; the body is built first so a template error
// becomes a clean 500, not half a page.
func (h *Handler) render(w http.ResponseWriter, status int, name string, v view) {
	t := h.pages[name]
	var buf bytes.Buffer
	if t == nil {
		h.log.Error("web: no template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		h.log.Error("web: render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows a short message on a page of its own.
func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	v := view{Title: http.StatusText(status), Error: msg}
	if s != nil {
		v.User, v.CSRF = s.caller.User, s.csrf
	}
	h.render(w, status, "error", v)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func fmtDuration(d time.Duration) string {
	past := d < 0
	if past {
		d = -d
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		s = fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	if past {
		return s + " ago"
	}
	return "in " + s
}
