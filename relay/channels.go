package relay

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hookrelay/hookrelay/relay/verify"
)

const (
	channelsFile = "channels.json"
	// channelNameBytes of randomness make a 24-character name (base64url): 144 bits, the
	// channel's only secret.
	channelNameBytes = 18
)

// channels holds the endpoints made at GET /new: stream-only smee endpoints with random
// names, outside the config, each living until it goes ttl without a webhook or a stream.
// The list is kept in data_dir (channels.json) so that a restart keeps them.
type channels struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	m      map[string]*channel
	dirty  bool                         // last uses changed since the file was written
	limits map[netip.Addr]*rate.Limiter // /new per client address (clientKey)
}

type channel struct {
	ep       *endpoint
	lastUsed time.Time
	streams  int
}

// savedChannel is one line of channels.json.
type savedChannel struct {
	Name     string    `json:"name"`
	LastUsed time.Time `json:"last_used"`
}

func newChannels(dataDir string, cfg ChannelsConfig, log *slog.Logger) *channels {
	c := &channels{path: filepath.Join(dataDir, channelsFile), log: log, m: map[string]*channel{}, limits: map[netip.Addr]*rate.Limiter{}}
	data, err := os.ReadFile(c.path)
	if errors.Is(err, fs.ErrNotExist) {
		return c
	}
	var saved []savedChannel
	if err == nil {
		err = json.Unmarshal(data, &saved)
	}
	if err != nil {
		log.Warn("channels list unreadable: earlier channels are gone", "path", c.path, "err", err)
		return c
	}
	for _, sc := range saved {
		if validName(sc.Name) && len(sc.Name) >= smeeMinName {
			c.m[sc.Name] = &channel{ep: channelEndpoint(sc.Name, cfg), lastUsed: sc.LastUsed}
		}
	}
	return c
}

// channelEndpoint is a channel's endpoint: stream-only, no verification.
func channelEndpoint(name string, cfg ChannelsConfig) *endpoint {
	c := Endpoint{Name: name, Smee: true, MaxBody: cfg.MaxBody, Retention: DefaultRetention, OutcomeTimeout: DefaultOutcomeTimeout}
	v, _ := verify.New(nil) // no scheme: nothing to fail
	return &endpoint{name: name, cfg: c, verifier: v}
}

// lookup returns the channel's endpoint, or nil.
func (c *channels) lookup(name string) *endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.m[name]; ch != nil {
		return ch.ep
	}
	return nil
}

// touch notes a use of the channel name (nothing when it is not one).
func (c *channels) touch(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.m[name]; ch != nil {
		ch.lastUsed = time.Now()
		c.dirty = true
	}
}

// attach counts a stream attached to (delta +1) or leaving (-1) the channel name: a channel
// with a stream never expires.
func (c *channels) attach(name string, delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.m[name]; ch != nil {
		ch.streams += delta
		ch.lastUsed = time.Now()
		c.dirty = true
	}
}

// allow takes one of client's channel creations; else it returns the seconds to wait.
func (c *channels) allow(client netip.Addr, perHour int) (int, bool) {
	k := clientKey(client)
	c.mu.Lock()
	l := c.limits[k]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(float64(perHour)/3600), max(1, perHour))
		c.limits[k] = l
	}
	c.mu.Unlock()
	return takeRateN(l)
}

// create makes a channel with a fresh random name and saves the list.
func (c *channels) create(cfg ChannelsConfig, taken func(string) bool) (string, error) {
	b := make([]byte, channelNameBytes)
	for {
		rand.Read(b)
		name := base64.RawURLEncoding.EncodeToString(b)
		c.mu.Lock()
		if c.m[name] != nil || taken(name) {
			c.mu.Unlock()
			continue
		}
		c.m[name] = &channel{ep: channelEndpoint(name, cfg), lastUsed: time.Now()}
		c.mu.Unlock()
		return name, c.save()
	}
}

// sweep removes the channels unused for ttl (and the rate limiters back at full), then
// saves the list if it changed; it returns how many expired.
func (c *channels) sweep(now time.Time, ttl time.Duration) (int, error) {
	c.mu.Lock()
	n := 0
	for name, ch := range c.m {
		if ch.streams == 0 && now.Sub(ch.lastUsed) > ttl {
			delete(c.m, name)
			n++
		}
	}
	for k, l := range c.limits {
		if l.TokensAt(now) >= float64(l.Burst()) {
			delete(c.limits, k)
		}
	}
	dirty := c.dirty || n > 0
	c.mu.Unlock()
	if !dirty {
		return n, nil
	}
	return n, c.save()
}

// endpoints lists the channels' endpoints.
func (c *channels) endpoints() []*endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*endpoint, 0, len(c.m))
	for _, ch := range c.m {
		out = append(out, ch.ep)
	}
	return out
}

func (c *channels) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *channels) save() error {
	c.mu.Lock()
	saved := make([]savedChannel, 0, len(c.m))
	for name, ch := range c.m {
		saved = append(saved, savedChannel{Name: name, LastUsed: ch.lastUsed})
	}
	c.dirty = false
	c.mu.Unlock()
	data, err := json.Marshal(saved)
	if err != nil {
		return err
	}
	return writeFileAtomic(c.path, data)
}

// takeRateN is takeRate for a limiter a client owns.
func takeRateN(l *rate.Limiter) (int, bool) {
	now := time.Now()
	res := l.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return int(math.Ceil(d.Seconds())), false
	}
	return 0, true
}

// endpointFor returns the endpoint name: a configured one, else a channel.
func (s *Server) endpointFor(lv *live, name string) *endpoint {
	if ep := lv.eps[name]; ep != nil {
		return ep
	}
	if !lv.cfg.Channels.Enabled {
		return nil
	}
	return s.channels.lookup(name)
}

// handleNewChannel answers GET and HEAD /new: a redirect (307, as smee.io) to a fresh channel.
func (s *Server) handleNewChannel(w http.ResponseWriter, r *http.Request) {
	lv := s.live.Load()
	cfg := lv.cfg.Channels
	if !cfg.Enabled {
		writeError(w, http.StatusNotFound, "channels are off on this relay (channels.enabled)")
		return
	}
	if !s.serving() {
		retryLater(w, http.StatusServiceUnavailable, retryStopping, "relay is starting or stopping: retry later")
		return
	}
	client, reason := verify.ClientAddr(r, lv.trusted)
	if reason != "" {
		client, _ = verify.ClientAddr(r, nil)
	}
	if wait, ok := s.channels.allow(client, cfg.PerClientPerHour); !ok {
		s.smeeM.channelsRefused.Inc()
		retryLater(w, http.StatusTooManyRequests, wait, "too many new channels from your address (channels.per_client_per_hour): retry later")
		return
	}
	name, err := s.channels.create(cfg, func(n string) bool { return s.live.Load().eps[n] != nil })
	if err != nil {
		s.log.Warn("channel list not saved: the channel is lost at the next restart", "err", err)
	}
	s.smeeM.channelsCreated.Inc()
	s.log.Debug("channel created", "remote", r.RemoteAddr)
	w.Header().Set("Location", publicBase(r, lv.trusted)+"/h/"+name)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusTemporaryRedirect)
}

// publicBase is scheme://host as the client reached the relay: X-Forwarded-Proto and
// X-Forwarded-Host count only from trusted_proxies.
func publicBase(r *http.Request, trusted []netip.Prefix) string {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if peer, _ := verify.ClientAddr(r, nil); prefixesContain(trusted, peer) {
		if p := strings.ToLower(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := r.Header.Get("X-Forwarded-Host"); h != "" && !strings.ContainsAny(h, "/?#@ ,") {
			host = h
		}
	}
	return scheme + "://" + host
}

func prefixesContain(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a.Unmap()) || p.Contains(a) {
			return true
		}
	}
	return false
}

// channelsLoop expires unused channels and saves their last uses, every min(ttl/4, 1m),
// until ctx ends, and once more then.
func (s *Server) channelsLoop(ctx context.Context) {
	every := min(s.cfg.Channels.TTL/4, time.Minute)
	every = max(every, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		stop := false
		select {
		case <-ctx.Done():
			stop = true
		case <-t.C:
		}
		n, err := s.channels.sweep(time.Now(), s.live.Load().cfg.Channels.TTL)
		s.smeeM.channelsExpired.Add(float64(n))
		if err != nil {
			s.log.Warn("channel list not saved", "err", err)
		}
		if n > 0 {
			s.log.Info("channels expired", "count", n)
		}
		if stop {
			return
		}
	}
}
