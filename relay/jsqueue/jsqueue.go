// Package jsqueue is the relay's queue on NATS JetStream, for relays run as a cluster: every
// relay of the cluster opens the same stream and bucket, takes ingress for every endpoint and
// leases to its own agents from the shared queue.
//
// Webhooks are messages of one stream (<Name>_WEBHOOKS), subject <name>.wh.<endpoint> (the
// endpoint in base64url), with the webhook id as Nats-Msg-Id so a retried publish is stored
// once, and their metadata in a header; a body larger than fits a message is stored
// first as parts, <name>.part.<id>.<n>. Each group's delivery state of a webhook is the key
// g.<group>.<id> of a replicated KV bucket (<Name>_STATE): absent while the webhook was
// never touched, so Append is one publish. Every state change (a lease too) is an update
// checked against the key's last revision, which is what makes a lease exclusive across
// relays. Finished webhooks stay in the stream until keep_done has passed (a sweep deletes
// them), so they can be listed and replayed.
//
// Delivery state is kept in the bucket rather than in JetStream consumers: the relay's
// retries are per webhook (a nack with its own next attempt time), ordered endpoints lease
// the head only, and replays move any finished webhook back; a durable consumer's ack floor
// and redelivery policy express none of these.
package jsqueue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hookrelay/hookrelay/persist"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultName names the stream and bucket of a cluster when Options.Name is empty.
const DefaultName = "HOOKRELAY"

// Options configures Open. Zero values mean the defaults given.
type Options struct {
	URLs     []string
	Replicas int    // replicas of the stream and the bucket, 1..5; default 3
	Creds    string // NATS credentials file; "" = none
	TLSCA    string // CA file to verify the servers; "" = system roots
	TLSCert  string // client certificate and key files, both or neither
	TLSKey   string
	Name     string   // stream and bucket prefix, [A-Za-z0-9_-]; default DefaultName
	Groups   []string // the declared consumer groups; default ["default"]
	// GroupsOf, when set, names the groups an endpoint declares (a webhook is kept for those
	// it was accepted for), and with "" every group declared (it then stands for Groups,
	// which a config reload may grow). Nil: every endpoint has Groups.
	GroupsOf func(endpoint string) []string
	NodeID   string // this relay's name, as its NATS connection name
	Logger   *slog.Logger
	// Quota returns an endpoint's limit of bytes held by unfinished webhooks (0 = none);
	// nil = no quotas. Checked against this relay's view of the cluster.
	Quota func(endpoint string) int64
	// KeepDone and KeepDead are how long delivered and dead webhooks stay listable; defaults
	// 24h and 7 days. GCInterval is how often the sweep runs; default 1m.
	KeepDone, KeepDead, GCInterval time.Duration
	// KeepDoneMax and KeepDeadMax bound how many delivered and dead webhooks the cluster keeps
	// (the relay's keep_done_max, keep_dead_max): beyond them the sweep deletes the ones
	// finished first. Every relay holds every kept webhook in its mirror, so they bound its
	// memory too. 0 = no bound but the times.
	KeepDoneMax, KeepDeadMax int
}

// Queue is the JetStream queue. It implements relay.Queue.
type Queue struct {
	opts    Options
	log     *slog.Logger
	prefix  string // subject prefix, the stream name's
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	kv      jetstream.KeyValue
	msgIDs  jetstream.KeyValue // Standard Webhooks message ids (msgid.go)
	m       *mirror
	ids     *persist.IDGen
	maxPart int  // largest body chunk one message carries
	batches bool // the state bucket takes atomic batches (batch.go)

	kvStream jetstream.Stream // the state bucket's

	// the retention sweep's (gc.go)
	sweepToken uint64    // this queue's, in the sweeper's lock
	sweeping   bool      // this queue holds the sweeper's lock
	fullPurged time.Time // when it last purged the bucket's old delete markers
	sweepDone  chan struct{}

	mu      sync.Mutex
	held    map[heldKey]uint64 // leases this queue handed out and still holds, for Close
	markers []marker           // the delete markers this queue wrote, oldest first (gc.go)
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	cc      jetstream.ConsumeContext
	kw      jetstream.KeyWatcher
}

type heldKey struct{ group, id string }

// Open connects to NATS, creates or updates the stream and the bucket, and returns once
// this relay's view of them is caught up.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if opts.Replicas == 0 {
		opts.Replicas = 3
	}
	if opts.Replicas < 1 || opts.Replicas > 5 {
		return nil, fmt.Errorf("jetstream queue: replicas %d not in 1..5: %w", opts.Replicas, persist.ErrInvalid)
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if !validID(opts.Name) {
		return nil, fmt.Errorf("jetstream queue: name %q: %w", opts.Name, persist.ErrInvalid)
	}
	if len(opts.Groups) == 0 {
		opts.Groups = []string{"default"}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.KeepDone = cmpOr(opts.KeepDone, 24*time.Hour)
	opts.KeepDead = cmpOr(opts.KeepDead, 7*24*time.Hour)
	opts.GCInterval = cmpOr(opts.GCInterval, time.Minute)
	q := &Queue{opts: opts, log: opts.Logger, prefix: opts.Name, m: newMirror(opts.Groups),
		ids: persist.NewIDGen(), held: map[heldKey]uint64{}, sweepToken: rand.Uint64() | 1}
	if err := q.connect(ctx); err != nil {
		return nil, fmt.Errorf("jetstream queue: %w", err)
	}
	if err := q.start(ctx); err != nil {
		q.Close()
		return nil, fmt.Errorf("jetstream queue: %w", err)
	}
	return q, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (q *Queue) connect(ctx context.Context) error {
	o := []nats.Option{nats.Name("hookrelay " + q.opts.NodeID), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond)}
	if q.opts.Creds != "" {
		o = append(o, nats.UserCredentials(q.opts.Creds))
	}
	if q.opts.TLSCA != "" || q.opts.TLSCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if q.opts.TLSCA != "" {
			pem, err := os.ReadFile(q.opts.TLSCA)
			if err != nil {
				return fmt.Errorf("read tls ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("tls ca %s: no certificate", q.opts.TLSCA)
			}
		}
		if q.opts.TLSCert != "" {
			c, err := tls.LoadX509KeyPair(q.opts.TLSCert, q.opts.TLSKey)
			if err != nil {
				return fmt.Errorf("load tls cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		o = append(o, nats.Secure(tc))
	}
	// A relay started together with its NATS servers waits for one (up to ctx) instead of
	// giving up at once with "no servers available".
	connected := make(chan struct{})
	var once sync.Once
	o = append(o, nats.RetryOnFailedConnect(true),
		nats.ConnectHandler(func(*nats.Conn) { once.Do(func() { close(connected) }) }))
	nc, err := nats.Connect(joinURLs(q.opts.URLs), o...)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if !nc.IsConnected() {
		select {
		case <-connected:
		case <-ctx.Done():
			nc.Close()
			return fmt.Errorf("connect: no NATS server answered at %s: %w", joinURLs(q.opts.URLs), ctx.Err())
		}
	}
	q.nc = nc
	q.js, err = jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// Parts leave room for the headers beside the chunk.
	q.maxPart = int(nc.MaxPayload()) - 8<<10
	if err := retry(ctx, q.openStream); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	if err := retry(ctx, q.openBucket); err != nil {
		return fmt.Errorf("state bucket: %w", err)
	}
	if err := retry(ctx, q.openMsgIDs); err != nil {
		return fmt.Errorf("message id bucket: %w", err)
	}
	if err := retry(ctx, q.enableBatches); err != nil {
		return fmt.Errorf("state bucket: %w", err)
	}
	return nil
}

// retry calls f, 5s at a time, until it succeeds or ctx ends: a JetStream API request can go
// unanswered while the cluster forms or elects a leader, and asking again is all it takes.
func retry(ctx context.Context, f func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// openStream looks the stream up and creates it only when missing (or updates its replicas
// when they changed): a relay starting while the cluster recovers a node needs no meta-leader
// change then.
func (q *Queue) openStream(ctx context.Context) error {
	cfg := jetstream.StreamConfig{
		Name:       q.opts.Name + "_WEBHOOKS",
		Subjects:   []string{q.prefix + ".wh.>", q.prefix + ".part.>"},
		Storage:    jetstream.FileStorage,
		Replicas:   q.opts.Replicas,
		Retention:  jetstream.LimitsPolicy,
		Duplicates: 2 * time.Minute,
	}
	st, err := q.js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		st, err = q.js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another relay created it meanwhile
			st, err = q.js.Stream(ctx, cfg.Name)
		}
	case err == nil && st.CachedInfo().Config.Replicas != cfg.Replicas:
		st, err = q.js.UpdateStream(ctx, cfg)
	}
	q.stream = st
	return err
}

func (q *Queue) openBucket(ctx context.Context) error {
	cfg := jetstream.KeyValueConfig{
		Bucket: q.opts.Name + "_STATE", History: 1, Storage: jetstream.FileStorage, Replicas: q.opts.Replicas,
	}
	kv, err := q.js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = q.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) { // another relay created it meanwhile
			kv, err = q.js.KeyValue(ctx, cfg.Bucket)
		}
	}
	q.kv = kv
	return err
}

func joinURLs(urls []string) string {
	s := ""
	for i, u := range urls {
		if i > 0 {
			s += ","
		}
		s += u
	}
	return s
}

// Close stops watching, hands back the leases this queue holds (so other relays need not wait
// for them to run out) and closes the connection. Idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	held := q.held
	q.held = map[heldKey]uint64{}
	q.mu.Unlock()

	if q.cancel != nil {
		q.cancel()
	}
	if q.sweepDone != nil {
		<-q.sweepDone // q.sweeping is the sweep's
	}
	if q.kv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		q.giveUpSweep(ctx)
		cancel()
	}
	if len(held) > 0 && q.kv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		keys := slices.Collect(maps.Keys(held))
		inParallel(len(keys), func(i int) { // one round trip each: 256 in a row took seconds
			q.release(ctx, keys[i].group, keys[i].id, held[keys[i]])
		})
		cancel()
	}
	if q.cc != nil {
		q.cc.Stop()
		<-q.cc.Closed()
	}
	if q.kw != nil {
		q.kw.Stop()
	}
	q.wg.Wait()
	q.m.close()
	if q.nc != nil {
		q.nc.Close()
	}
	return nil
}

// check refuses calls after Close.
func (q *Queue) check() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return persist.ErrClosed
	}
	return nil
}

// checkGroup refuses a group not declared ("" too unless anyOK: every group).
func (q *Queue) checkGroup(group string, anyOK bool) error {
	if err := q.check(); err != nil {
		return err
	}
	if anyOK && group == "" {
		return nil
	}
	for _, g := range q.groupsOf("") {
		if g == group {
			return nil
		}
	}
	return fmt.Errorf("%w: group %q not declared", persist.ErrInvalid, group)
}

// checkGroupOf refuses a group endpoint does not declare.
func (q *Queue) checkGroupOf(group, endpoint string) error {
	if err := q.check(); err != nil {
		return err
	}
	if slices.Contains(q.groupsOf(endpoint), group) {
		return nil
	}
	return fmt.Errorf("%w: group %q not declared on endpoint %q", persist.ErrInvalid, group, endpoint)
}

var errConflict = errors.New("jsqueue: state changed meanwhile")

// groupsOf is endpoint's declared groups, or ("") every declared group.
func (q *Queue) groupsOf(endpoint string) []string {
	if q.opts.GroupsOf != nil {
		if gs := q.opts.GroupsOf(endpoint); len(gs) > 0 {
			return gs
		}
	}
	return q.opts.Groups
}
