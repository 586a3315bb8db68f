package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hookrelay/hookrelay/agent"
)

// maxPrintedBody bounds what --print-body prints of one body.
const maxPrintedBody = 64 << 10

// printer writes listen's stdout from the agent's events: one line per delivery attempt, a
// line when the tunnel comes up or goes down. Events arrive from many goroutines; mu keeps
// each line (and its body) whole.
type printer struct {
	mu        sync.Mutex
	w         io.Writer
	printBody bool
	bodied    map[string]bool // ids whose body was printed
	lastDial  string          // last dial failure printed, so an outage prints once
}

func newPrinter(w io.Writer, printBody bool) *printer {
	return &printer{w: w, printBody: printBody, bodied: map[string]bool{}}
}

// banner says where webhooks come from and go to, and where the admin UI is.
func (p *printer) banner(a *agent.Agent, f *listenFlags) {
	p.mu.Lock()
	defer p.mu.Unlock()
	from := "endpoint " + f.endpoint
	if u := ingressURL(f.relay, f.endpoint); u != "" {
		from = u
	}
	fmt.Fprintf(p.w, "forwarding %s to %s\n", from, a.Config().Routes[0].Target)
	if addr := a.AdminAddr(); addr != "" {
		fmt.Fprintf(p.w, "admin UI: http://%s/admin/\n", addr)
	}
}

// event is the agent's Config.OnEvent.
func (p *printer) event(ev agent.Event) {
	var b strings.Builder
	ts := ev.Time.Format("15:04:05")
	switch ev.Kind {
	case agent.EventTunnelUp:
		fmt.Fprintf(&b, "%s connected to %s via %s as %s\n", ts, ev.Relay, ev.Transport, ev.AgentID)
	case agent.EventTunnelDown:
		if !ev.WasUp {
			// A dial that failed: say so once per reason, not on every retry.
			p.mu.Lock()
			same := p.lastDial == ev.Reason
			p.lastDial = ev.Reason
			p.mu.Unlock()
			if same {
				return
			}
			fmt.Fprintf(&b, "%s cannot connect to %s: %s; retrying\n", ts, ev.Relay, clean(ev.Reason))
			break
		}
		fmt.Fprintf(&b, "%s tunnel down: %s; reconnecting\n", ts, clean(ev.Reason))
	case agent.EventNacked:
		fmt.Fprintf(&b, "%s refused %s: %s\n", ts, clean(ev.ID), clean(ev.Reason))
	case agent.EventAttempt:
		p.attemptLine(&b, ts, ev)
	default:
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.Kind == agent.EventTunnelUp {
		p.lastDial = ""
	}
	if ev.Kind == agent.EventAttempt && p.printBody && !p.bodied[ev.ID] {
		if len(p.bodied) >= 10000 {
			clear(p.bodied)
		}
		p.bodied[ev.ID] = true
		b.WriteString(formatBody(ev.Body))
	}
	io.WriteString(p.w, b.String())
}

// attemptLine is "15:04:05 POST /path?q 200 12ms ID", then " retry in 2s" or " dead: reason".
func (p *printer) attemptLine(b *strings.Builder, ts string, ev agent.Event) {
	path := ev.Path
	if path == "" {
		path = "/"
	}
	if ev.Query != "" {
		path += "?" + ev.Query
	}
	status := strconv.Itoa(ev.Status)
	if ev.Status == 0 {
		status = ev.ErrKind
		if ev.ErrKind == agent.ErrKindNone {
			status = "-"
		}
	}
	fmt.Fprintf(b, "%s %s %s %s %s %s", ts, clean(ev.Method), clean(path), status, shortDur(ev.Duration), clean(ev.ID))
	if ev.Replay {
		b.WriteString(" (replay)")
	}
	if ev.Attempt > 1 {
		fmt.Fprintf(b, " (attempt %d)", ev.Attempt)
	}
	switch ev.Outcome {
	case agent.OutcomeRetry:
		fmt.Fprintf(b, " retry in %s", shortDur(ev.RetryIn))
	case agent.OutcomeDead:
		fmt.Fprintf(b, " dead: %s", clean(ev.Reason))
	}
	b.WriteByte('\n')
}

// shortDur is "12ms" under a second, else seconds to a tenth ("1.5s", "2m3.4s").
func shortDur(d time.Duration) string {
	if d < time.Second {
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	return d.Round(100 * time.Millisecond).String()
}

// formatBody is the body as printed under its line, indented: pretty JSON if it parses, else
// the text if it is UTF-8, else "<N bytes binary>". Control characters are escaped so a body
// cannot drive the terminal.
func formatBody(body []byte) string {
	if len(body) == 0 {
		return ""
	}
	var text string
	var pretty bytes.Buffer
	switch {
	case json.Valid(body) && json.Indent(&pretty, body, "", "  ") == nil:
		text = pretty.String()
	case utf8.Valid(body):
		text = string(body)
	default:
		return fmt.Sprintf("  <%d bytes binary>\n", len(body))
	}
	more := ""
	if len(text) > maxPrintedBody {
		cut := maxPrintedBody
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		more = fmt.Sprintf("\n… (%d bytes in all)", len(body))
		text = text[:cut]
	}
	var b strings.Builder
	for line := range strings.Lines(strings.TrimRight(text, "\r\n") + more) {
		b.WriteString("  ")
		b.WriteString(clean(strings.TrimRight(line, "\r\n")))
		b.WriteByte('\n')
	}
	return b.String()
}

// clean escapes control characters (tabs kept), so remote text cannot drive the terminal.
func clean(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isControl(r rune) bool {
	return r != '\t' && (unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.In(r, unicode.Bidi_Control))
}
