package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

// page is what the layout renders around a page's Data.
type page struct {
	Title string
	Who   viewer
	CSRF  string // the session's, for the logout form
	Nav   string // the current section: sites, events, alarms
	Data  any
}

// pageNames are the templates under assets/templates, each rendered
// inside layout.html.
var pageNames = []string{"login", "sites", "site", "device", "events", "alarms", "error"}

var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05")
	},
	"dur": func(d time.Duration) string {
		if d < 0 {
			return "never"
		}
		return d.Round(time.Millisecond).String() + " ago"
	},
	"lower": strings.ToLower,
}

// parsePages parses every page with the layout.
func parsePages() (map[string]*template.Template, error) {
	tfs, err := fs.Sub(assets, "assets/templates")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(tfs, "layout.html", n+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}

// render writes page p of template name with status; the page is
// rendered into a buffer first so that a template error is a 500, not
// half a page.
func (s *Server) render(w http.ResponseWriter, status int, name string, p page) {
	var b bytes.Buffer
	if err := s.pages[name].Execute(&b, p); err != nil {
		s.log.Error("console render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// renderFor renders a page of a session's.
func (s *Server) renderFor(w http.ResponseWriter, se *session, status int, name, nav, title string, data any) {
	s.render(w, status, name, page{Title: title, Who: se.who, CSRF: se.csrf, Nav: nav, Data: data})
}

// fail renders the error page: 404 for what the credential does not
// reach, 400 for bad input, 502 for a read that failed.
func (s *Server) fail(w http.ResponseWriter, se *session, err error) {
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, errNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errBadInput):
		status = http.StatusBadRequest
	}
	if status == http.StatusBadGateway {
		s.log.Warn("console read failed", "user", se.who.User, "err", err)
	}
	s.renderFor(w, se, status, "error", "", http.StatusText(status), err.Error())
}
