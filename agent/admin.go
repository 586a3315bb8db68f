package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookrelay/hookrelay/internal/admin"
)

// adminHandler serves the agent's admin address: /healthz, /readyz, /metrics, the admin API at
// /admin/api/ and the UI at /admin/. Without admin_token the address is loopback (the config
// insists) and the admin handler refuses foreign Host headers and cross-site state changes;
// with it, /admin/ and /metrics need the token.
func (a *Agent) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.handleHealthz)
	mux.HandleFunc("GET /readyz", a.handleReadyz)
	mux.Handle("GET /metrics", a.adminAPI.RequireToken(promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{
		ErrorLog: slogPrinter{a}, ErrorHandling: promhttp.ContinueOnError,
	})))
	mux.Handle("/admin/", a.adminAPI)
	mux.Handle("GET /{$}", http.RedirectHandler("/admin/", http.StatusFound))
	return mux
}

// newAdminAPI builds the admin API and UI over the agent's store, and exports the count of
// the requests it refuses.
func (a *Agent) newAdminAPI() (*admin.Handler, error) {
	h, err := admin.New(admin.Config{
		Side:      admin.Agent,
		Store:     adminStore{st: a.store, rs: &a.routes},
		Status:    func() any { return a.Status() },
		Series:    a.series,
		TokenHash: a.cfg.AdminToken,
		OnReplay:  a.onReplay,
		Log:       a.log,
	})
	if err != nil {
		return nil, err
	}
	a.metrics.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hookagent_admin_refused_total",
			Help: "Admin requests refused as cross-site (Origin, Sec-Fetch-Site) or with a foreign Host (DNS rebinding).",
		}, func() float64 { return float64(h.Refused()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hookagent_admin_failed_logins_total",
			Help: "Wrong admin tokens (with admin_token): failed UI logins, admin API calls and /metrics scrapes.",
		}, func() float64 { return float64(h.FailedLogins()) }),
	)
	return h, nil
}

// onReplay wakes every deliverer after a replay, so the replay goes out now (a webhook's
// copies may be in several routes' queues; waking an idle one costs a look at its queue).
func (a *Agent) onReplay(string) {
	for _, d := range a.routes.all {
		d.wakeUp()
	}
}

// slogPrinter sends promhttp's error log to the agent's logger.
type slogPrinter struct{ a *Agent }

func (p slogPrinter) Println(v ...any) { p.a.log.Warn("metrics", "err", v) }

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
