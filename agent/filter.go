package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/hookrelay/hookrelay/persist"
)

// maxFilterBody is the largest body a filter sees parsed; a larger one is null to it.
const maxFilterBody = 1 << 20

// filter is a route's compiled `filter:` expression (expr-lang/expr: small, fast, and enough
// for a predicate over a request; see docs/ROUTING.md for why not CEL).
type filter struct {
	src  string
	prog *vm.Program
}

// filterVars declares the names an expression may use, with their types, so that a typo is
// a config error and not a webhook filtered at run time. Body is dynamic (parsed JSON).
type filterVars struct {
	Method  string            `expr:"method"`
	Path    string            `expr:"path"`
	Query   map[string]string `expr:"query"`
	Headers map[string]string `expr:"headers"`
	Body    any               `expr:"body"`
}

// compileFilter compiles src; its error names the position ("line L, column C: …").
func compileFilter(src string) (*filter, error) {
	prog, err := expr.Compile(src, expr.Env(filterVars{}), expr.AsBool())
	if err != nil {
		var fe *file.Error
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("line %d, column %d: %s", fe.Line, fe.Column+1, fe.Message)
		}
		return nil, err
	}
	return &filter{src: src, prog: prog}, nil
}

// match evaluates the filter over rec. A false result or an evaluation error filters the
// webhook out; reason says which.
func (f *filter) match(rec *persist.Record) (ok bool, reason string) {
	out, err := expr.Run(f.prog, filterInput(rec))
	if err != nil {
		return false, "filter error: " + err.Error()
	}
	if b, _ := out.(bool); !b {
		return false, "filter false"
	}
	return true, ""
}

// filterInput is what an expression sees: method, path (the suffix after the endpoint),
// query and headers as maps of lowercase names (repeated values joined with ", "), and the
// body parsed as JSON (null when it is not JSON or larger than 1 MiB).
func filterInput(rec *persist.Record) filterVars {
	headers := make(map[string]string, len(rec.Headers))
	for _, h := range rec.Headers {
		k := strings.ToLower(h.Name)
		if v, ok := headers[k]; ok {
			headers[k] = v + ", " + h.Value
		} else {
			headers[k] = h.Value
		}
	}
	query := map[string]string{}
	if vals, err := url.ParseQuery(rec.Query); err == nil {
		for k, vs := range vals {
			query[k] = strings.Join(vs, ", ")
		}
	}
	var body any
	if len(rec.Body) > 0 && len(rec.Body) <= maxFilterBody {
		if err := json.Unmarshal(rec.Body, &body); err != nil {
			body = nil
		}
	}
	return filterVars{Method: rec.Method, Path: rec.Path, Query: query, Headers: headers, Body: body}
}
