package protocol

import (
	"net/http"
	"strings"
)

// hopHeaders are connection-level headers (RFC 9110 §7.6.1), in canonical form: they are not
// part of the sender's message, so the relay does not store them and the agent does not send
// them to a target.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// HopByHop returns whether a canonical header name is hop-by-hop in a message whose
// Connection header has the values connection: one of the RFC 9110 list, or a name listed
// there.
func HopByHop(connection []string) func(name string) bool {
	var listed map[string]bool
	for _, v := range connection {
		for n := range strings.SplitSeq(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				if listed == nil {
					listed = map[string]bool{}
				}
				listed[http.CanonicalHeaderKey(n)] = true
			}
		}
	}
	return func(name string) bool { return hopHeaders[name] || listed[name] }
}
