package codec

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/encoding/protojson"
)

const uiOrigin = "http://127.0.0.1:8233"

func newTestServer(t *testing.T) (*httptest.Server, *Codec, *observer.ObservedLogs) {
	t.Helper()
	c := newCodec(t, softKey(t, "k1"))
	core, logs := observer.New(zap.DebugLevel)
	srv := httptest.NewServer(NewServer(c, ServerOptions{Origin: uiOrigin, Log: zap.New(core), MaxBody: 64 << 10}))
	t.Cleanup(srv.Close)
	return srv, c, logs
}

// post sends payloads as the Web UI does.
func post(t *testing.T, url, origin string, payloads []*commonpb.Payload) *http.Response {
	t.Helper()
	body, err := protojson.Marshal(&commonpb.Payloads{Payloads: payloads})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Namespace", "default")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func decodeResponse(t *testing.T, resp *http.Response) []*commonpb.Payload {
	t.Helper()
	var out commonpb.Payloads
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer is not Payloads JSON: %v\n%s", err, raw)
	}
	return out.Payloads
}

func preflight(t *testing.T, url, origin string, extra map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodOptions, url, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type,x-namespace")
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestServerDecodesForTheWebUI(t *testing.T) {
	srv, c, logs := newTestServer(t)
	enc, err := c.Encode(toPayloads(t, alice))
	if err != nil {
		t.Fatal(err)
	}
	plain := toPayloads(t, "plain from before the codec")

	// The browser's preflight.
	resp := preflight(t, srv.URL+"/decode", uiOrigin, map[string]string{"Access-Control-Request-Private-Network": "true"})
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != uiOrigin ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || h.Get("Access-Control-Allow-Private-Network") != "true" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, h)
	}
	for _, want := range []string{"Content-Type", "X-Namespace", "Authorization"} {
		if !strings.Contains(h.Get("Access-Control-Allow-Headers"), want) {
			t.Errorf("preflight does not allow header %s: %q", want, h.Get("Access-Control-Allow-Headers"))
		}
	}

	// The decode call.
	resp = post(t, srv.URL+"/decode", uiOrigin, append(enc, plain...))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != uiOrigin {
		t.Fatalf("decode: %d %v", resp.StatusCode, resp.Header)
	}
	got := decodeResponse(t, resp)
	var cust customer
	if len(got) != 2 || converter.GetDefaultDataConverter().FromPayload(got[0], &cust) != nil || cust != alice {
		t.Fatalf("decoded %v", got)
	}
	var s string
	if converter.GetDefaultDataConverter().FromPayload(got[1], &s) != nil || s != "plain from before the codec" {
		t.Fatalf("plain payload not passed through: %v", got[1])
	}

	// Mounted deeper (the protocol allows it), and encode from the UI
	// (signals sent from it) works too.
	resp = post(t, srv.URL+"/codec/encode", uiOrigin, plain)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("encode: %d", resp.StatusCode)
	}
	if got := decodeResponse(t, resp); len(got) != 1 || !IsEncrypted(got[0]) {
		t.Fatalf("encode answered %v", got)
	}

	// One line per request with who, where and how many; never contents.
	entries := logs.FilterMessage("codec request").All()
	if len(entries) != 2 {
		t.Fatalf("%d request log lines, want 2: %v", len(entries), logs.All())
	}
	fields := entries[0].ContextMap()
	if fields["op"] != "decode" || fields["payloads"] != int64(2) || fields["encrypted"] != int64(1) ||
		fields["namespace"] != "default" || !strings.HasPrefix(fields["remote"].(string), "127.0.0.1:") {
		t.Errorf("log fields: %v", fields)
	}
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && (strings.Contains(s, "C31000002") || strings.Contains(s, "plain from before")) {
				t.Errorf("log line %q field %s shows payload contents: %q", e.Message, k, s)
			}
		}
	}
}

func TestServerRefusesOtherOrigins(t *testing.T) {
	srv, c, logs := newTestServer(t)
	enc, _ := c.Encode(toPayloads(t, alice))
	for _, origin := range []string{"http://evil.example", "http://127.0.0.1:8234", "http://localhost:8233", "null"} {
		resp := preflight(t, srv.URL+"/decode", origin, nil)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s: %d, allow-origin %q", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		resp = post(t, srv.URL+"/decode", origin, enc)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("decode from %s: %d", origin, resp.StatusCode)
		}
	}
	if n := logs.FilterMessage("codec request refused: origin not allowed").Len(); n != 8 {
		t.Errorf("%d refusals logged, want 8", n)
	}
	if logs.FilterMessage("codec request").Len() != 0 {
		t.Error("a refused origin reached the codec")
	}
}

// Programs (the temporal CLI with --codec-endpoint) send no Origin.
func TestServerWithoutOrigin(t *testing.T) {
	srv, c, _ := newTestServer(t)
	enc, _ := c.Encode(toPayloads(t, alice))
	resp := post(t, srv.URL+"/decode", "", enc)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("decode without Origin: %d %v", resp.StatusCode, resp.Header)
	}
	if got := decodeResponse(t, resp); len(got) != 1 || IsEncrypted(got[0]) {
		t.Fatalf("decoded %v", got)
	}
}

func TestServerBadRequests(t *testing.T) {
	srv, _, logs := newTestServer(t)
	// An unknown key: a clear error naming it, logged, no contents.
	other := newCodec(t, softKey(t, "retired/99"))
	enc, _ := other.Encode(toPayloads(t, alice))
	resp := post(t, srv.URL+"/decode", uiOrigin, enc)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown key: %d", resp.StatusCode)
	}
	failed := logs.FilterMessage("codec request failed").All()
	if len(failed) != 1 || !strings.Contains(failed[0].ContextMap()["error"].(string), `"retired/99"`) {
		t.Fatalf("failure log: %v", failed)
	}

	cases := []struct {
		name, method, path, body string
		status                   int
	}{
		{"get", http.MethodGet, "/decode", "", http.StatusNotFound},
		{"other path", http.MethodPost, "/decrypt", `{"payloads":[]}`, http.StatusNotFound},
		{"not json", http.MethodPost, "/decode", `C31000002`, http.StatusBadRequest},
		{"too big", http.MethodPost, "/decode", `{"payloads":[{"data":"` + strings.Repeat("A", 70<<10) + `"}]}`, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Origin", uiOrigin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	for _, e := range logs.All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "C31000002") {
				t.Errorf("log line %q quotes the body: %q", e.Message, s)
			}
		}
	}
}
