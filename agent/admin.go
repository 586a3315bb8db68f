package agent

import (
	"net/http"
)

// adminHandler serves the agent's local admin address. Metrics, the admin API and the UI add
// their routes in addAdminRoutes.
func (a *Agent) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.handleHealthz)
	mux.HandleFunc("GET /readyz", a.handleReadyz)
	a.addAdminRoutes(mux)
	return mux
}

// addAdminRoutes is where later routes (/metrics, /admin/api/, /admin/) are registered.
func (a *Agent) addAdminRoutes(mux *http.ServeMux) {}

// handleHealthz answers 200 while the process serves.
func (a *Agent) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// handleReadyz answers 200 when the store is open and a tunnel to the relay is up, else 503
// with the reason.
func (a *Agent) handleReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	switch {
	case !a.storeOK.Load():
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("store closed\n"))
	case !a.Connected():
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("no tunnel to the relay\n"))
	default:
		w.Write([]byte("ok\n"))
	}
}
