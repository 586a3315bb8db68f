package agent

import (
	"strings"
	"testing"

	"github.com/hookrelay/hookrelay/persist"
)

func TestFilterMatch(t *testing.T) {
	push := &persist.Record{Method: "POST", Path: "/gh", Query: "a=1&a=2&b=x",
		Headers: []persist.Header{{Name: "X-GitHub-Event", Value: "push"}, {Name: "Accept", Value: "a"}, {Name: "accept", Value: "b"}},
		Body:    []byte(`{"ref": "refs/heads/main", "n": 3, "commits": [{"id": "c1"}]}`)}
	for _, c := range []struct {
		src    string
		ok     bool
		reason string
	}{
		{`headers["x-github-event"] == "push" && body.ref == "refs/heads/main"`, true, ""},
		{`headers["x-github-event"] == "issues"`, false, "filter false"},
		{`method == "POST" && path == "/gh" && query["a"] == "1, 2" && query.b == "x"`, true, ""},
		{`headers.accept == "a, b"`, true, ""},
		{`body.n > 2 && len(body.commits) == 1 && body.commits[0].id == "c1"`, true, ""},
		{`body.missing.deeper == 1`, false, "filter error"},
	} {
		f, err := compileFilter(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		ok, reason := f.match(push)
		if ok != c.ok || !strings.HasPrefix(reason, c.reason) {
			t.Errorf("%s: %v %q, want %v %q", c.src, ok, reason, c.ok, c.reason)
		}
	}
	notJSON := &persist.Record{Method: "POST", Body: []byte("not json")}
	f, _ := compileFilter(`body == nil`)
	if ok, _ := f.match(notJSON); !ok {
		t.Error("a body that is not JSON should be null to a filter")
	}
	big := &persist.Record{Method: "POST", Body: []byte(`{"a":"` + strings.Repeat("x", maxFilterBody) + `"}`)}
	if ok, _ := f.match(big); !ok {
		t.Error("a body over 1 MiB should be null to a filter")
	}
}

func TestFilterConfigErrors(t *testing.T) {
	for _, c := range []struct{ filter, want string }{
		{`headers["x"] ==`, "config routes[0]: filter: line 1, column"},
		{`heders["x"] == "push"`, "unknown name heders"},
		{`method`, "config routes[0]: filter:"}, // not a bool
	} {
		_, err := ParseConfig([]byte("relay: ws://127.0.0.1:1\ntoken: t\ndata_dir: /tmp/x\n" +
			"routes: [{endpoint: ep, target: \"http://127.0.0.1:1/\", filter: '" + c.filter + "'}]\n"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("filter %s: err %v, want %q", c.filter, err, c.want)
		}
	}
}
