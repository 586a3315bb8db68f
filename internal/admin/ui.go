package admin

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"path"
)

//go:embed ui/index.html ui/app.js ui/charts.js ui/style.css ui/login.html
var uiFiles embed.FS

var loginTmpl = template.Must(template.ParseFS(uiFiles, "ui/login.html"))

// uiCSP lets the page load only its own script, stylesheet and API; no inline script.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// index serves the UI's page.
func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	h.serveFile(w, "index.html")
}

// asset serves the UI's scripts and stylesheet.
func (h *Handler) asset(w http.ResponseWriter, r *http.Request) {
	switch name := r.PathValue("file"); name {
	case "app.js", "charts.js", "style.css":
		h.serveFile(w, name)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) serveFile(w http.ResponseWriter, name string) {
	b, err := fs.ReadFile(uiFiles, "ui/"+name)
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	ct := "text/html; charset=utf-8"
	switch path.Ext(name) {
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Security-Policy", uiCSP)
	w.Write(b)
}

// loginPage renders the login form with code and an optional error line.
func (h *Handler) loginPage(w http.ResponseWriter, code int, msg string) {
	var buf bytes.Buffer
	if err := loginTmpl.Execute(&buf, struct{ Error string }{msg}); err != nil {
		h.log.Error("render login page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", uiCSP)
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}
