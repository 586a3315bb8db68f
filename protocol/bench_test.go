package protocol

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkTunnel measures webhooks per second through each transport on loopback: the relay
// side sends 1 KiB webhooks with at most benchWindow unacked, the agent side acks them in
// batches of benchAckBatch, as a session does. cpu-ns/msg is the process's CPU time (both
// sides) per webhook, steadier than msgs/s on a shared machine.
func BenchmarkTunnel(b *testing.B) {
	onTransports(b, benchTunnel, true)
}

// onTransports runs bench on a relay and agent tunnel pair of each transport (QUIC with one
// data stream too, with oneStream).
func onTransports(b *testing.B, bench func(b *testing.B, relay, agent Tunnel), oneStream bool) {
	b.Run("websocket", func(b *testing.B) {
		agent, relay := wsPair(b, WSConfig{})
		bench(b, relay, agent)
	})
	b.Run("quic", func(b *testing.B) {
		agent, relay := newQUICEnv(b, QUICConfig{}).pair(b, "")
		bench(b, relay, agent)
	})
	if oneStream {
		b.Run("quic-1stream", func(b *testing.B) {
			agent, relay := newQUICEnv(b, QUICConfig{Streams: 1}).pair(b, "")
			bench(b, relay, agent)
		})
	}
}

const (
	benchWindow   = 1024
	benchAckBatch = 64
)

func benchTunnel(b *testing.B, relay, agent Tunnel) {
	body := binaryBody(1024)
	headers := []Header{{"Content-Type", "application/json"}, {"User-Agent", "GitHub-Hookshot/1"},
		{"X-GitHub-Event", "push"}, {"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
		{"X-Hub-Signature-256", "sha256=0123456789abcdef0123456789abcdef"}}
	agentErr := make(chan error, 1)
	go func() { // agent: read webhooks, ack in batches
		ids := make([]string, 0, benchAckBatch)
		for got := 0; got < b.N; {
			f, err := agent.ReadFrame()
			if err != nil {
				agentErr <- err
				return
			}
			w, ok := f.(*Webhook)
			if !ok {
				continue // the Welcome
			}
			ids = append(ids, w.ID)
			if got++; len(ids) == benchAckBatch || got == b.N {
				if err := agent.WriteFrame(&Ack{IDs: ids}); err != nil {
					agentErr <- err
					return
				}
				ids = ids[:0]
			}
		}
		agentErr <- nil
	}()
	credit := make(chan struct{}, benchWindow)
	acksDone := make(chan error, 1)
	go func() { // relay: release the window as acks come
		for acked := 0; acked < b.N; {
			f, err := relay.ReadFrame()
			if err != nil {
				acksDone <- err
				return
			}
			for range f.(*Ack).IDs {
				<-credit
			}
			acked += len(f.(*Ack).IDs)
		}
		acksDone <- nil
	}()
	// A QUIC dialer holds webhooks back until the first control-stream frame, as a Welcome.
	if err := relay.WriteFrame(&Welcome{SessionID: "bench"}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start, cpuStart := time.Now(), cpuTime()
	for i := range b.N {
		credit <- struct{}{}
		w := &Webhook{ID: "01JDQ" + strconv.Itoa(i), Endpoint: "github", ReceivedAt: start,
			Method: "POST", Path: "/hook", Headers: headers, BodyLen: int64(len(body)), Body: body}
		if err := relay.WriteFrame(w); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-acksDone; err != nil {
		b.Fatal(err)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpuStart
	b.StopTimer()
	if err := <-agentErr; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

// BenchmarkLargeTransfer measures one 10 MiB webhook at a time through each transport on
// loopback, sent as a relay sends it (SendWebhook: a Webhook frame, then 64 KiB Chunks) and
// acked once its last byte arrived; MB/s is the body's bytes.
//
//	go test -bench=LargeTransfer -run='^$' -benchtime=20x ./protocol
func BenchmarkLargeTransfer(b *testing.B) {
	onTransports(b, benchLarge, false)
}

func benchLarge(b *testing.B, relay, agent Tunnel) {
	body := binaryBody(10 << 20)
	agentErr := make(chan error, 1)
	go func() { // agent: count each webhook's bytes, ack it when whole
		for done := 0; done < b.N; {
			f, err := agent.ReadFrame()
			if err != nil {
				agentErr <- err
				return
			}
			var id string
			var end bool
			switch f := f.(type) {
			case *Webhook:
				id, end = f.ID, f.BodyLen == int64(len(f.Body))
			case *Chunk:
				id, end = f.ID, f.Offset+int64(len(f.Data)) == int64(len(body))
			}
			if end {
				done++
				if err := agent.WriteFrame(&Ack{IDs: []string{id}}); err != nil {
					agentErr <- err
					return
				}
			}
		}
		agentErr <- nil
	}()
	if err := relay.WriteFrame(&Welcome{SessionID: "bench"}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := range b.N {
		w := &Webhook{ID: "01JDQ" + strconv.Itoa(i), Endpoint: "github", Method: "POST", Body: body}
		if err := SendWebhook(relay, w, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := relay.ReadFrame(); err != nil { // its ack
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := <-agentErr; err != nil {
		b.Fatal(err)
	}
}
