package platform_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridpay/gridpay/platform"
)

// newTLSServer starts an HTTPS test server and a client that trusts it.
func newTLSServer(t *testing.T, h http.Handler, timeout time.Duration) (*httptest.Server, *platform.Client) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	tlsCfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	c, err := platform.NewClient(srv.URL, tlsCfg, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return srv, c
}

func TestNewClientRefusesBadArguments(t *testing.T) {
	cfg := &tls.Config{}
	for _, tc := range []struct {
		url     string
		cfg     *tls.Config
		timeout time.Duration
	}{
		{"http://127.0.0.1:8700", cfg, 0},
		{"https://", cfg, 0},
		{"https://user:pw@127.0.0.1:8700", cfg, 0},
		{"https://127.0.0.1:8700?x=1", cfg, 0},
		{"://bad", cfg, 0},
		{"https://127.0.0.1:8700", nil, 0},
		{"https://127.0.0.1:8700", cfg, -time.Second},
	} {
		if _, err := platform.NewClient(tc.url, tc.cfg, tc.timeout); err == nil {
			t.Errorf("NewClient(%q, %v, %v) accepted", tc.url, tc.cfg != nil, tc.timeout)
		}
	}
	if _, err := platform.NewClient("https://127.0.0.1:8700/", cfg, 0); err != nil {
		t.Errorf("NewClient with a trailing slash: %v", err)
	}
}

// answer makes a handler that answers every request with status and body.
func answer(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func errBody(code, msg string) string {
	return `{"error":{"code":"` + code + `","message":"` + msg + `"}}`
}

func TestClientErrorMapping(t *testing.T) {
	const js = "application/json"
	for _, tc := range []struct {
		name      string
		h         http.HandlerFunc
		code      platform.Code
		sentinel  error
		retryable bool
	}{
		{"unknown customer", answer(404, js, errBody("unknown_customer", "no such customer")), platform.CodeUnknownCustomer, platform.ErrUnknownCustomer, false},
		{"bill not found", answer(404, js, errBody("bill_not_found", "no such bill")), platform.CodeBillNotFound, platform.ErrBillNotFound, false},
		{"not found", answer(404, js, errBody("not_found", "no such payment")), platform.CodeNotFound, platform.ErrNotFound, false},
		{"already settled", answer(409, js, errBody("already_settled", "paid")), platform.CodeAlreadySettled, platform.ErrAlreadySettled, false},
		{"conflict", answer(409, js, errBody("conflict", "other content")), platform.CodeConflict, platform.ErrConflict, false},
		{"amount mismatch", answer(422, js, errBody("amount_mismatch", "too much")), platform.CodeAmountMismatch, platform.ErrAmountMismatch, false},
		{"insufficient funds", answer(422, js, errBody("insufficient_funds", "balance")), platform.CodeInsufficientFunds, platform.ErrInsufficientFunds, false},
		{"invalid request", answer(400, js, errBody("invalid_request", "bad")), platform.CodeInvalidRequest, platform.ErrInvalidRequest, false},
		{"unavailable body", answer(503, js, errBody("unavailable", "maintenance")), platform.CodeUnavailable, platform.ErrUnavailable, true},
		{"500 with another code", answer(500, js, errBody("conflict", "bug")), platform.CodeUnavailable, platform.ErrUnavailable, true},
		{"502 from a proxy", answer(502, "text/html", "<html>bad gateway</html>"), platform.CodeUnavailable, platform.ErrUnavailable, true},
		{"404 without error body", answer(404, "text/plain", "404 page not found"), platform.CodeUnavailable, platform.ErrUnavailable, true},
		{"4xx with empty code", answer(400, js, `{"error":{"message":"x"}}`), platform.CodeUnavailable, platform.ErrUnavailable, true},
		{"429", answer(429, js, errBody("invalid_request", "slow down")), platform.CodeUnavailable, platform.ErrUnavailable, true},
		{"200 with garbage", answer(200, js, `{"id": 12`), platform.CodeUnavailable, platform.ErrUnavailable, true},
		{"200 with HTML", answer(200, "text/html", `<html></html>`), platform.CodeUnavailable, platform.ErrUnavailable, true},
		{"oversize answer", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", js)
			io.WriteString(w, `{"id":"`)
			chunk := strings.Repeat("x", 1<<16)
			for n := 0; n <= platform.MaxResponseBytes; n += len(chunk) {
				io.WriteString(w, chunk)
			}
			io.WriteString(w, `"}`)
		}, platform.CodeUnavailable, platform.ErrUnavailable, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newTLSServer(t, tc.h, 5*time.Second)
			_, err := c.Customer(context.Background(), "C31000001")
			var pe *platform.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *platform.Error", err, err)
			}
			if pe.Code != tc.code || !errors.Is(err, tc.sentinel) {
				t.Errorf("code %q, want %q (err %v)", pe.Code, tc.code, err)
			}
			if platform.Retryable(err) != tc.retryable {
				t.Errorf("Retryable = %v, want %v", platform.Retryable(err), tc.retryable)
			}
			if tc.code == platform.CodeUnavailable && pe.Err == nil {
				t.Errorf("unavailable error wraps no cause: %v", err)
			}
			if tc.code != platform.CodeUnavailable && pe.Message == "" {
				t.Errorf("the platform's message was lost: %+v", pe)
			}
		})
	}
}

func TestClientNetworkErrorsAreUnavailable(t *testing.T) {
	srv, c := newTLSServer(t, answer(200, "application/json", `{}`), 2*time.Second)
	srv.Close()
	_, err := c.Customer(context.Background(), "C31000001")
	if !errors.Is(err, platform.ErrUnavailable) || !platform.Retryable(err) {
		t.Fatalf("closed server: %v", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("the cause is not reachable with errors.As: %v", err)
	}

	// A server that does not speak TLS at all.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(conn, "HTTP/1.1 200 OK\r\n\r\nhello")
			conn.Close()
		}
	}()
	c2, err := platform.NewClient("https://"+l.Addr().String(), &tls.Config{}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Customer(context.Background(), "C31000001"); !errors.Is(err, platform.ErrUnavailable) {
		t.Errorf("plain-text server: %v", err)
	}
}

func TestClientTimeoutAndContext(t *testing.T) {
	release := make(chan struct{})
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(200)
	}
	_, c := newTLSServer(t, http.HandlerFunc(slow), 200*time.Millisecond)
	defer close(release)

	start := time.Now()
	_, err := c.Customer(context.Background(), "C31000001")
	if !errors.Is(err, platform.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow server: %v; want unavailable wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the timeout of 200ms took %v", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = c.Customer(ctx, "C31000001")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v; want context.Canceled in the chain", err)
	}
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestClientRequestIDs(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	_, c := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids = append(ids, r.Header.Get(platform.RequestIDHeader))
		mu.Unlock()
		io.WriteString(w, `{"id":"C31000001"}`)
	}), time.Second)
	ctx := context.Background()
	for range 2 {
		if _, err := c.Customer(ctx, "C31000001"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Customer(platform.WithRequestID(ctx, "gw-req-7"), "C31000001"); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || !hexID.MatchString(ids[0]) || !hexID.MatchString(ids[1]) || ids[0] == ids[1] || ids[2] != "gw-req-7" {
		t.Errorf("request IDs %q: want two distinct random IDs and then gw-req-7", ids)
	}
}

func TestClientRefusesBadArgumentsLocally(t *testing.T) {
	var calls int
	_, c := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(500)
	}), time.Second)
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["debit zero"] = c.DebitPrepaid(ctx, "C31000001", "k1", 0, "")
	_, checks["debit negative"] = c.DebitPrepaid(ctx, "C31000001", "k1", -5, "")
	_, checks["credit negative"] = c.CreditPrepaid(ctx, "C31000001", "k1", -5, "")
	_, checks["empty customer"] = c.Customer(ctx, "")
	_, checks["dot-dot customer"] = c.Bills(ctx, "..", platform.BillFilter{})
	_, checks["empty bill"] = c.Bill(ctx, "C31000001", "")
	_, checks["empty reference"] = c.PostPayment(ctx, platform.PostPayment{})
	_, checks["control character"] = c.Payment(ctx, "a\nb")
	_, checks["long key"] = c.PrepaidEntry(ctx, strings.Repeat("k", 129))
	for name, err := range checks {
		if !errors.Is(err, platform.ErrInvalidRequest) {
			t.Errorf("%s: %v, want invalid_request", name, err)
		}
	}
	if calls != 0 {
		t.Errorf("%d requests reached the server", calls)
	}
}

// recorded is one request as the server saw it.
type recorded struct {
	Method string
	Path   string // escaped
	Query  map[string]string
	Body   map[string]any
}

// recorder answers every request with a fixed body and records it.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
	body string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got := recorded{Method: r.Method, Path: r.URL.EscapedPath(), Query: map[string]string{}}
	for k, v := range r.URL.Query() {
		got.Query[k] = v[0]
	}
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			if err := json.Unmarshal(b, &got.Body); err != nil {
				http.Error(w, "bad json", 400)
				return
			}
		}
	}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, got)
	rec.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, rec.body)
}

func (rec *recorder) last() recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.reqs[len(rec.reqs)-1]
}

// serviceCalls calls every method of platform.Service once. Keys are the
// method names; a method missing here fails TestServiceCallsCoverService.
func serviceCalls() map[string]func(context.Context, platform.Service) error {
	paidAt := time.Date(2026, 11, 20, 3, 4, 5, 0, time.UTC)
	return map[string]func(context.Context, platform.Service) error{
		"Customer": func(ctx context.Context, s platform.Service) error {
			_, err := s.Customer(ctx, "C31000001")
			return err
		},
		"MeteringPoints": func(ctx context.Context, s platform.Service) error {
			_, err := s.MeteringPoints(ctx, "C31000001")
			return err
		},
		"Consumption": func(ctx context.Context, s platform.Service) error {
			_, err := s.Consumption(ctx, "C31000001", "2026-01", "2026-10")
			return err
		},
		"Bills": func(ctx context.Context, s platform.Service) error {
			_, err := s.Bills(ctx, "C31000001", platform.BillFilter{Status: "unpaid", From: "2025-11", To: "2026-10"})
			return err
		},
		"Bill": func(ctx context.Context, s platform.Service) error {
			_, err := s.Bill(ctx, "C31000001", "B20261031000001")
			return err
		},
		"Arrears": func(ctx context.Context, s platform.Service) error {
			_, err := s.Arrears(ctx, "C31000001")
			return err
		},
		"Payments": func(ctx context.Context, s platform.Service) error {
			_, err := s.Payments(ctx, "C31000001", "2026-01-01", "2026-11-21")
			return err
		},
		"Payment": func(ctx context.Context, s platform.Service) error {
			_, err := s.Payment(ctx, "UP-2026-0001")
			return err
		},
		"PostPayment": func(ctx context.Context, s platform.Service) error {
			_, err := s.PostPayment(ctx, platform.PostPayment{
				Reference: "UP-2026-0001", CustomerID: "C31000001", Amount: 12345,
				Allocations: []platform.Allocation{{BillID: "B20261031000001", Amount: 12345}},
				Channel:     "unionpay", ChannelTxnID: "Q1", PaidAt: paidAt,
			})
			return err
		},
		"ReversePayment": func(ctx context.Context, s platform.Service) error {
			_, err := s.ReversePayment(ctx, "UP-2026-0001", "refunded")
			return err
		},
		"PrepaidAccount": func(ctx context.Context, s platform.Service) error {
			_, err := s.PrepaidAccount(ctx, "C31000001")
			return err
		},
		"DebitPrepaid": func(ctx context.Context, s platform.Service) error {
			_, err := s.DebitPrepaid(ctx, "C31000001", "load-1", 500, "load onto key")
			return err
		},
		"CreditPrepaid": func(ctx context.Context, s platform.Service) error {
			_, err := s.CreditPrepaid(ctx, "C31000001", "refund-1", 500, "refund")
			return err
		},
		"PrepaidEntry": func(ctx context.Context, s platform.Service) error {
			_, err := s.PrepaidEntry(ctx, "load-1")
			return err
		},
	}
}

func serviceMethods() []string {
	typ := reflect.TypeFor[platform.Service]()
	var names []string
	for i := range typ.NumMethod() {
		names = append(names, typ.Method(i).Name)
	}
	return names
}

func TestServiceCallsCoverService(t *testing.T) {
	calls := serviceCalls()
	for _, m := range serviceMethods() {
		if calls[m] == nil {
			t.Errorf("serviceCalls has no call of Service.%s", m)
		}
	}
}

func TestClientRequests(t *testing.T) {
	rec := &recorder{body: `{}`}
	_, c := newTLSServer(t, rec, time.Second)
	want := map[string]recorded{
		"Customer":       {Method: "GET", Path: "/v1/customers/C31000001"},
		"MeteringPoints": {Method: "GET", Path: "/v1/customers/C31000001/metering-points"},
		"Consumption":    {Method: "GET", Path: "/v1/customers/C31000001/consumption", Query: map[string]string{"from": "2026-01", "to": "2026-10"}},
		"Bills":          {Method: "GET", Path: "/v1/customers/C31000001/bills", Query: map[string]string{"status": "unpaid", "from": "2025-11", "to": "2026-10"}},
		"Bill":           {Method: "GET", Path: "/v1/customers/C31000001/bills/B20261031000001"},
		"Arrears":        {Method: "GET", Path: "/v1/customers/C31000001/arrears"},
		"Payments":       {Method: "GET", Path: "/v1/customers/C31000001/payments", Query: map[string]string{"from": "2026-01-01", "to": "2026-11-21"}},
		"Payment":        {Method: "GET", Path: "/v1/payments/UP-2026-0001"},
		"PostPayment": {Method: "PUT", Path: "/v1/payments/UP-2026-0001", Body: map[string]any{
			"reference": "UP-2026-0001", "customer_id": "C31000001", "amount": 12345.0,
			"allocations": []any{map[string]any{"bill_id": "B20261031000001", "amount": 12345.0}},
			"channel":     "unionpay", "channel_txn_id": "Q1", "paid_at": "2026-11-20T03:04:05Z",
		}},
		"ReversePayment": {Method: "POST", Path: "/v1/payments/UP-2026-0001/reversal", Body: map[string]any{"note": "refunded"}},
		"PrepaidAccount": {Method: "GET", Path: "/v1/customers/C31000001/prepaid"},
		"DebitPrepaid": {Method: "PUT", Path: "/v1/prepaid-entries/load-1", Body: map[string]any{
			"customer_id": "C31000001", "amount": -500.0, "memo": "load onto key"}},
		"CreditPrepaid": {Method: "PUT", Path: "/v1/prepaid-entries/refund-1", Body: map[string]any{
			"customer_id": "C31000001", "amount": 500.0, "memo": "refund"}},
		"PrepaidEntry": {Method: "GET", Path: "/v1/prepaid-entries/load-1"},
	}
	for name, call := range serviceCalls() {
		if err := call(context.Background(), c); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got := rec.last()
		w := want[name]
		if w.Query == nil {
			w.Query = map[string]string{}
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s sent\n %+v\nwant\n %+v", name, got, w)
		}
	}
}

func TestClientEscapesPathSegments(t *testing.T) {
	rec := &recorder{body: `{}`}
	_, c := newTLSServer(t, rec, time.Second)
	if _, err := c.Bill(context.Background(), "C1/../admin", "B?1#x"); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.last().Path, "/v1/customers/C1%2F..%2Fadmin/bills/B%3F1%23x"; got != want {
		t.Errorf("path %q, want %q", got, want)
	}
}

func TestClientDecodesAnswers(t *testing.T) {
	bills := []platform.Bill{{ID: "B1", CustomerID: "C1", Period: "2026-10", AmountDue: 100, Status: platform.BillOpen}}
	b, _ := json.Marshal(platform.ItemsBody[platform.Bill]{Items: bills})
	// Fields the client does not know yet must not break it.
	body := strings.Replace(string(b), `"items"`, `"next_page":null,"items"`, 1)
	_, c := newTLSServer(t, answer(200, "application/json", body), time.Second)
	got, err := c.Bills(context.Background(), "C1", platform.BillFilter{})
	if err != nil || !reflect.DeepEqual(got, bills) {
		t.Errorf("Bills = %+v, %v; want %+v", got, err, bills)
	}
}

func TestStatusOf(t *testing.T) {
	want := map[platform.Code]int{
		platform.CodeUnknownCustomer: 404, platform.CodeBillNotFound: 404, platform.CodeNotFound: 404,
		platform.CodeAlreadySettled: 409, platform.CodeConflict: 409,
		platform.CodeAmountMismatch: 422, platform.CodeInsufficientFunds: 422,
		platform.CodeInvalidRequest: 400, platform.CodeUnavailable: 503,
	}
	for code, status := range want {
		if got := platform.StatusOf(code); got != status {
			t.Errorf("StatusOf(%s) = %d, want %d", code, got, status)
		}
	}
	codes := errorCodes(t)
	for _, code := range codes {
		if _, ok := want[platform.Code(code)]; !ok {
			t.Errorf("code %s of errors.go has no expected status here", code)
		}
	}
	if len(codes) != len(want) {
		t.Errorf("errors.go declares %d codes, this test knows %d", len(codes), len(want))
	}
}
