package protocol

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/internal/testutil"
)

func TestFingerprint(t *testing.T) {
	der := []byte("not really DER")
	sum := sha256.Sum256(der)
	if got, want := Fingerprint(der), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("Fingerprint = %q, want %q", got, want)
	}
	good := Fingerprint(der)
	for _, fp := range []string{good, "sha256:" + strings.ToUpper(good[7:])} {
		if _, err := PinnedTLSConfig(fp, ""); err != nil {
			t.Errorf("%q refused: %v", fp, err)
		}
	}
	for _, fp := range []string{"", good[7:], "sha1:" + good[7:], good[:len(good)-2], good + "00",
		"sha256:" + strings.Repeat("zz", 32), "SHA256:" + good[7:], good + " "} {
		if _, err := PinnedTLSConfig(fp, ""); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
			t.Errorf("%q: %v, want a format error", fp, err)
		}
	}
}

// pinnedWSS serves AcceptWebSocket over TLS with a self-signed certificate made here.
func pinnedWSS(t *testing.T) (url, fingerprint string) {
	cert := testutil.SelfSigned(t).TLS
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tun, err := AcceptWebSocket(w, r, WSConfig{}); err == nil {
			tun.WriteFrame(&Welcome{SessionID: "pinned"})
			tun.ReadFrame() // until the client closes
			tun.Close()
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes below
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return "wss" + strings.TrimPrefix(srv.URL, "https"), Fingerprint(cert.Certificate[0])
}

func TestPinnedWebSocket(t *testing.T) {
	url, fp := pinnedWSS(t)

	tlsConf, err := PinnedTLSConfig(fp, "")
	if err != nil {
		t.Fatal(err)
	}
	tun, err := DialWebSocket(context.Background(), url, WSDialConfig{TLS: tlsConf})
	if err != nil {
		t.Fatalf("right fingerprint refused: %v", err)
	}
	f, err := readWithin(t, tun, 5e9)
	if err != nil || f.(*Welcome).SessionID != "pinned" {
		t.Fatalf("over pinned wss: %v, %v", f, err)
	}
	tun.Close()

	wrong, _ := PinnedTLSConfig(Fingerprint([]byte("another cert")), "")
	if _, err := DialWebSocket(context.Background(), url, WSDialConfig{TLS: wrong}); !errors.Is(err, ErrFingerprintMismatch) {
		t.Fatalf("wrong fingerprint: %v, want ErrFingerprintMismatch", err)
	}
	// Without a pin the self-signed certificate fails ordinary verification.
	if _, err := DialWebSocket(context.Background(), url, WSDialConfig{}); err == nil {
		t.Fatal("self-signed relay accepted without a pin")
	}
}
