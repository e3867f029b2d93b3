package platform_test

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gridpay/gridpay/platform"
)

// operation is one path + method of the OpenAPI document.
type operation struct {
	Method    string   // upper case
	Path      string   // template, e.g. /v1/customers/{id}
	GoMethods []string // operationId, or x-go-methods when one operation serves several
	Responses map[string]any
}

func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.0.") {
		t.Fatalf("openapi version %q, want 3.0.x", v)
	}
	return doc
}

func operations(t *testing.T, doc map[string]any) []operation {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	if !ok || len(paths) == 0 {
		t.Fatal("openapi.yaml has no paths")
	}
	var ops []operation
	for path, item := range paths {
		for method, v := range item.(map[string]any) {
			op, ok := v.(map[string]any)
			if !ok {
				continue
			}
			o := operation{Method: strings.ToUpper(method), Path: path}
			if ms, ok := op["x-go-methods"].([]any); ok {
				for _, m := range ms {
					o.GoMethods = append(o.GoMethods, m.(string))
				}
			} else if id, ok := op["operationId"].(string); ok {
				o.GoMethods = []string{id}
			} else {
				t.Errorf("%s %s has neither operationId nor x-go-methods", o.Method, path)
			}
			o.Responses, _ = op["responses"].(map[string]any)
			ops = append(ops, o)
		}
	}
	return ops
}

// matches reports whether an escaped request path fits a path template.
func matches(template, path string) bool {
	ts := strings.Split(template, "/")
	ps := strings.Split(path, "/")
	if len(ts) != len(ps) {
		return false
	}
	for i := range ts {
		if strings.HasPrefix(ts[i], "{") && strings.HasSuffix(ts[i], "}") {
			if ps[i] == "" {
				return false
			}
			continue
		}
		if ts[i] != ps[i] {
			return false
		}
	}
	return true
}

// TestOpenAPIDocumentsEveryServiceMethod sends every Service method through
// the real client and checks that the request it makes is an operation of
// the document that names that method.
func TestOpenAPIDocumentsEveryServiceMethod(t *testing.T) {
	ops := operations(t, loadOpenAPI(t))
	rec := &recorder{body: `{}`}
	_, c := newTLSServer(t, rec, time.Second)
	calls := serviceCalls()
	for _, name := range serviceMethods() {
		call := calls[name]
		if call == nil {
			t.Errorf("no call for Service.%s", name)
			continue
		}
		if err := call(context.Background(), c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		req := rec.last()
		var found *operation
		for i := range ops {
			if ops[i].Method == req.Method && matches(ops[i].Path, req.Path) {
				found = &ops[i]
			}
		}
		switch {
		case found == nil:
			t.Errorf("Service.%s sends %s %s, which openapi.yaml does not document", name, req.Method, req.Path)
		case !slices.Contains(found.GoMethods, name):
			t.Errorf("Service.%s sends %s %s, documented as %v", name, req.Method, req.Path, found.GoMethods)
		case found.Responses["200"] == nil && found.Responses["201"] == nil:
			t.Errorf("%s %s documents no success answer", found.Method, found.Path)
		case found.Responses["503"] == nil:
			t.Errorf("%s %s does not document 503 unavailable", found.Method, found.Path)
		}
	}
	// And nothing documented that no method uses.
	methods := serviceMethods()
	for _, op := range ops {
		for _, m := range op.GoMethods {
			if !slices.Contains(methods, m) {
				t.Errorf("%s %s names %s, which is not a Service method", op.Method, op.Path, m)
			}
		}
	}
}

// errorCodes reads the Code constants declared in errors.go, so that a code
// added there without documentation fails the tests.
func errorCodes(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok {
					t.Fatalf("a Code constant is not a string literal")
				}
				s, _ := strconv.Unquote(lit.Value)
				codes = append(codes, s)
			}
		}
	}
	if len(codes) < 9 {
		t.Fatalf("found only %d Code constants in errors.go: %v", len(codes), codes)
	}
	return codes
}

func TestOpenAPIDocumentsEveryErrorCode(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	ec, ok := schemas["ErrorCode"].(map[string]any)
	if !ok {
		t.Fatal("no ErrorCode schema")
	}
	var enum []string
	for _, v := range ec["enum"].([]any) {
		enum = append(enum, v.(string))
	}
	statuses, _ := ec["x-http-status"].(map[string]any)
	codes := errorCodes(t)
	for _, code := range codes {
		if !slices.Contains(enum, code) {
			t.Errorf("error code %q is not in the ErrorCode enum", code)
		}
		st, ok := statuses[code].(int)
		if !ok {
			t.Errorf("error code %q has no x-http-status", code)
			continue
		}
		if want := platform.StatusOf(platform.Code(code)); st != want {
			t.Errorf("error code %q documented with status %d, platform.StatusOf says %d", code, st, want)
		}
	}
	for _, code := range enum {
		if !slices.Contains(codes, code) {
			t.Errorf("documented code %q is not declared in errors.go", code)
		}
	}
	// The body shape.
	body := schemas["ErrorBody"].(map[string]any)["properties"].(map[string]any)["error"].(map[string]any)
	if req := fmt.Sprint(body["required"]); req != "[code message]" {
		t.Errorf("error object requires %s, want [code message]", req)
	}
	// mTLS is part of the contract.
	info := doc["info"].(map[string]any)
	if d, _ := info["description"].(string); !strings.Contains(d, "mutual TLS") || !strings.Contains(d, "services CA") ||
		!strings.Contains(d, "gateway") || !strings.Contains(d, "worker") {
		t.Error("the description does not state the mutual TLS requirement")
	}
}

// TestOpenAPIRefsResolve checks that every $ref points at something.
func TestOpenAPIRefsResolve(t *testing.T) {
	doc := loadOpenAPI(t)
	var walk func(v any, where string)
	n := 0
	walk = func(v any, where string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					n++
					ref, _ := x.(string)
					if !resolves(doc, ref) {
						t.Errorf("%s: $ref %q does not resolve", where, ref)
					}
					continue
				}
				walk(x, where+"/"+k)
			}
		case []any:
			for i, x := range v {
				walk(x, fmt.Sprintf("%s[%d]", where, i))
			}
		}
	}
	walk(doc, "")
	if n < 20 {
		t.Errorf("only %d $refs found; is the document complete?", n)
	}
}

func resolves(doc map[string]any, ref string) bool {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var cur any = doc
	for _, part := range strings.Split(rest, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}
