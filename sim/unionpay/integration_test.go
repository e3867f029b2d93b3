//go:build integration

package simunionpay_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/money"
	simunionpay "github.com/gridpay/gridpay/sim/unionpay"
	"github.com/gridpay/gridpay/unionpay"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const merID = "898310048160001"

// testScale makes a minute of the resend schedule 120 ms.
const testScale = 0.002

// clock is the business clock of a test: real time plus an offset the
// test can move forward.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// sink is GridPay's backUrl in the tests: it records every notification
// and answers status(n) to the n-th (from 1); default 200.
type sink struct {
	mu     sync.Mutex
	got    []received
	status func(n int) int
	srv    *httptest.Server
}

type received struct {
	form url.Values
	at   time.Time
}

func newSink(t *testing.T) *sink {
	s := &sink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("sink: %v", err)
		}
		s.mu.Lock()
		s.got = append(s.got, received{r.PostForm, time.Now()})
		n := len(s.got)
		status := s.status
		s.mu.Unlock()
		code := http.StatusOK
		if status != nil {
			code = status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) URL() string { return s.srv.URL + "/unionpay/notify" }

func (s *sink) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func (s *sink) setStatus(f func(n int) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = f
}

// env is a simulator on a fresh database with GridPay's client for it.
type env struct {
	t        *testing.T
	opts     simunionpay.Options
	srv      *simunionpay.Server
	client   *unionpay.Client
	merchant *simunionpay.Merchant
	sink     *sink
	clock    *clock
	logs     *observer.ObservedLogs
	dsn      string
	seq      int
}

func setup(t *testing.T, change func(*simunionpay.Options)) *env {
	t.Helper()
	e := &env{t: t, dsn: testenv.NewDatabase(t), clock: &clock{}, sink: newSink(t)}
	state := t.TempDir()
	m, err := simunionpay.NewMerchant(state, t.TempDir(), merID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.merchant = m
	core, logs := observer.New(zap.DebugLevel)
	e.logs = logs
	e.opts = simunionpay.Options{DSN: e.dsn, StateDir: state, TimeScale: testScale, Now: e.clock.Now, Logger: zap.New(core)}
	if change != nil {
		change(&e.opts)
	}
	e.start()
	key, err := unionpay.LoadKeyFile(m.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := unionpay.LoadCertPool(e.srv.RootFile())
	if err != nil {
		t.Fatal(err)
	}
	e.client, err = unionpay.NewClient(unionpay.Config{
		MerchantID: merID, FrontURL: e.srv.FrontURL(), BackURL: e.srv.BackURL(), QueryURL: e.srv.QueryURL(), FileURL: e.srv.FileURL(),
		Signer: key, SignCert: m.Cert, Roots: roots, Now: e.clock.Now,
		HTTPClient: &http.Client{Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) start() {
	e.t.Helper()
	srv, err := simunionpay.Start(context.Background(), e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = srv
	e.t.Cleanup(func() { srv.Stop() })
}

// restart stops the simulator and starts it again on the same address
// and database, as a crash test restarts the process.
func (e *env) restart() {
	e.t.Helper()
	if err := e.srv.Stop(); err != nil {
		e.t.Fatal(err)
	}
	e.opts.Listen = strings.TrimPrefix(e.srv.URL(), "http://")
	e.start()
}

func (e *env) faults(f simunionpay.Faults) {
	e.t.Helper()
	if err := e.srv.SetFaults(f); err != nil {
		e.t.Fatal(err)
	}
}

// order makes a consume order with a fresh order ID.
func (e *env) order(amount money.Fen) unionpay.Order {
	e.seq++
	now := e.clock.Now()
	return unionpay.Order{
		OrderID: fmt.Sprintf("GP%s%04d", now.Format("20060102150405"), e.seq), TxnTime: now, Amount: amount,
		PayTimeout: now.Add(15 * time.Minute), FrontURL: e.sink.srv.URL + "/unionpay/return", BackURL: e.sink.URL(),
		Description: "电费 <2026-02> & more",
	}
}

// post posts a consume form as the payer's browser does (following the
// redirect to the pay page) and returns the final response's page.
func (e *env) post(f unionpay.Form, query string) (*http.Response, string) {
	e.t.Helper()
	v := url.Values{}
	for k, x := range f.Fields {
		v.Set(k, x)
	}
	action := f.Action
	if query != "" {
		action += "?" + query
	}
	resp, err := http.PostForm(action, v)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// pay makes an order and pays it with auto-approve or sim_action; it
// returns the order and the query ID.
func (e *env) pay(amount money.Fen) (unionpay.Order, unionpay.Notification) {
	e.t.Helper()
	o := e.order(amount)
	f, err := e.client.ConsumeForm(o)
	if err != nil {
		e.t.Fatal(err)
	}
	_, page := e.post(f, "sim_action=approve")
	n := e.returned(page)
	if n.Outcome != unionpay.Succeeded {
		e.t.Fatalf("payment not approved: %+v", n)
	}
	return o, n
}

var (
	backFormRE = regexp.MustCompile(`<form id="back" method="post" action="([^"]*)"`)
	inputRE    = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// returnForm reads the auto-submitting form that takes the payer back to
// frontUrl.
func returnForm(t *testing.T, page string) (string, url.Values) {
	t.Helper()
	m := backFormRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no return form in the page:\n%s", page)
	}
	v := url.Values{}
	for _, in := range inputRE.FindAllStringSubmatch(page, -1) {
		v.Add(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
	}
	return html.UnescapeString(m[1]), v
}

// returned verifies the result the payer's browser brings back.
func (e *env) returned(page string) unionpay.Notification {
	e.t.Helper()
	action, fields := returnForm(e.t, page)
	if !strings.HasSuffix(action, "/unionpay/return") {
		e.t.Errorf("return form posts to %s", action)
	}
	n, err := e.client.ParseNotification(fields)
	if err != nil {
		e.t.Fatalf("the front return does not verify: %v", err)
	}
	return n
}

// waitFor polls cond for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// notificationsFor are the verified notifications the sink got for an
// order.
func (e *env) notificationsFor(orderID string) []unionpay.Notification {
	e.t.Helper()
	var ns []unionpay.Notification
	for _, r := range e.sink.received() {
		n, err := e.client.ParseNotification(r.form)
		if err != nil {
			e.t.Fatalf("a notification does not verify: %v", err)
		}
		if n.OrderID == orderID {
			ns = append(ns, n)
		}
	}
	return ns
}

func (e *env) waitNotifications(orderID string, n int) []unionpay.Notification {
	e.t.Helper()
	waitFor(e.t, fmt.Sprintf("%d notification(s) of %s", n, orderID), func() bool { return len(e.notificationsFor(orderID)) >= n })
	return e.notificationsFor(orderID)
}

func (e *env) query(orderID string, txnTime time.Time) unionpay.QueryResult {
	e.t.Helper()
	r, err := e.client.Query(context.Background(), orderID, txnTime)
	if err != nil {
		e.t.Fatalf("query %s: %v", orderID, err)
	}
	return r
}

func TestConsumeAutoApprove(t *testing.T) {
	e := setup(t, func(o *simunionpay.Options) { o.Faults.AutoApprove = true })
	o := e.order(123456)
	f, err := e.client.ConsumeForm(o)
	if err != nil {
		t.Fatal(err)
	}
	resp, page := e.post(f, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d\n%s", resp.StatusCode, page)
	}
	front := e.returned(page)
	ns := e.waitNotifications(o.OrderID, 1)
	n := ns[0]
	if n.TxnType != unionpay.TxnConsume || n.Amount != 123456 || n.Outcome != unionpay.Succeeded || n.QueryID == "" ||
		n.SettleDate != unionpay.SettleDateOf(e.clock.Now()) || !n.TxnTime.Equal(o.TxnTime.Truncate(time.Second)) {
		t.Errorf("notification %+v", n)
	}
	if front != n {
		t.Errorf("front return %+v differs from the notification %+v", front, n)
	}
	r := e.query(o.OrderID, o.TxnTime)
	if r.Outcome != unionpay.Succeeded || r.Amount != 123456 || r.QueryID != n.QueryID || r.TxnType != unionpay.TxnConsume || r.SettleDate != n.SettleDate {
		t.Errorf("query %+v", r)
	}
	recs, _ := e.srv.Notifications(context.Background(), n.QueryID)
	if len(recs) != 1 || recs[0].State != simunionpay.NotifyDelivered || recs[0].Sends != 1 || len(recs[0].Deliveries) != 1 {
		t.Errorf("simulator's record %+v", recs)
	}
	// The form page GridPay hands to the browser is usable as it is.
	if page := string(f.HTML()); !strings.Contains(page, e.srv.FrontURL()) {
		t.Errorf("form page does not post to the gateway:\n%s", page)
	}
}

func TestConsumeThroughPayPage(t *testing.T) {
	e := setup(t, nil)
	o := e.order(88_000_00)
	f, err := e.client.ConsumeForm(o)
	if err != nil {
		t.Fatal(err)
	}
	resp, page := e.post(f, "")
	payURL := resp.Request.URL.String()
	if resp.StatusCode != http.StatusOK || !strings.Contains(payURL, simunionpay.PathPay) {
		t.Fatalf("no pay page: %d %s\n%s", resp.StatusCode, payURL, page)
	}
	for _, want := range []string{"¥88,000.00", o.OrderID, "电费 &lt;2026-02&gt; &amp; more", `name="cardNumber"`, "Approve", "Decline"} {
		if !strings.Contains(page, want) {
			t.Errorf("pay page lacks %q", want)
		}
	}
	// Before the payer acts, the order is known but undecided.
	if r := e.query(o.OrderID, o.TxnTime); r.RespCode != "00" || r.OrigRespCode != "05" || r.Outcome != unionpay.Unknown {
		t.Errorf("pending: %+v", r)
	}
	const badCard, card = "6216261000000000017", "6216 2610 0000 0000 018"
	resp, err = http.PostForm(payURL, url.Values{"action": {"approve"}, "cardNumber": {badCard}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(b), "输入的卡号无效") {
		t.Errorf("bad card: %d\n%s", resp.StatusCode, b)
	}
	resp, err = http.PostForm(payURL, url.Values{"action": {"approve"}, "cardNumber": {card}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	front := e.returned(string(b))
	if front.Outcome != unionpay.Succeeded || front.Amount != 88_000_00 {
		t.Errorf("front return %+v", front)
	}
	n := e.waitNotifications(o.OrderID, 1)[0]
	if n.QueryID != front.QueryID || n.Outcome != unionpay.Succeeded {
		t.Errorf("notification %+v", n)
	}
	txn, err := e.srv.Transaction(context.Background(), merID, o.OrderID, unionpay.FormatTime(o.TxnTime))
	if err != nil || txn.CardLast4 != "0018" || txn.Status != simunionpay.StatusSucceeded {
		t.Errorf("transaction %+v %v", txn, err)
	}
	// The card number is neither stored nor logged.
	digits := strings.ReplaceAll(card, " ", "")
	assertNowhere(t, e, digits, badCard)

	// Paying again changes nothing; the page shows the result.
	resp, err = http.PostForm(payURL, url.Values{"action": {"decline"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if again := e.returned(string(b)); again.Outcome != unionpay.Succeeded {
		t.Errorf("second click changed the result: %+v", again)
	}
	// The same form posted five times at once is one order.
	oc := e.order(300)
	fc, _ := e.client.ConsumeForm(oc)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := url.Values{}
			for k, x := range fc.Fields {
				v.Set(k, x)
			}
			resp, err := http.PostForm(fc.Action, v)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("concurrent post: status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if ts, _ := e.srv.Transactions(context.Background(), simunionpay.TxnFilter{OrderID: oc.OrderID}); len(ts) != 1 {
		t.Errorf("concurrent posts made %d transactions", len(ts))
	}
	// The same form posted again is the same order; other content under
	// the same orderId and txnTime is a duplicate (12).
	if _, page := e.post(f, ""); e.returned(page).QueryID != n.QueryID {
		t.Error("resent form made another transaction")
	}
	o2 := o
	o2.Amount++
	f2, _ := e.client.ConsumeForm(o2)
	if resp, page := e.post(f2, ""); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, `data-resp-code="12"`) {
		t.Errorf("changed order: %d\n%s", resp.StatusCode, page)
	}

	// Declined: the browser returns a failure; no back notification
	// (like the real gateway); the query says failed.
	od := e.order(5000)
	fd, _ := e.client.ConsumeForm(od)
	resp, _ = e.post(fd, "")
	resp, err = http.PostForm(resp.Request.URL.String(), url.Values{"action": {"decline"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if d := e.returned(string(b)); d.Outcome != unionpay.Failed || d.RespCode != "01" {
		t.Errorf("declined front return %+v", d)
	}
	if r := e.query(od.OrderID, od.TxnTime); r.Outcome != unionpay.Failed || r.OrigRespCode != "01" {
		t.Errorf("declined query %+v", r)
	}
	time.Sleep(300 * time.Millisecond)
	if ns := e.notificationsFor(od.OrderID); len(ns) != 0 {
		t.Errorf("a declined payment was notified: %+v", ns)
	}
}

// assertNowhere checks that none of the secrets appears in the
// simulator's tables or log.
func assertNowhere(t *testing.T, e *env, secrets ...string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var dump string
	err = conn.QueryRow(context.Background(), `SELECT
		(SELECT coalesce(string_agg(row_to_json(t)::text, ''), '') FROM unionpay_sim.transactions t) ||
		(SELECT coalesce(string_agg(row_to_json(n)::text, ''), '') FROM unionpay_sim.notifications n) ||
		(SELECT coalesce(string_agg(row_to_json(d)::text, ''), '') FROM unionpay_sim.deliveries d)`).Scan(&dump)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	for _, entry := range e.logs.All() {
		logs.WriteString(entry.Message)
		for k, v := range entry.ContextMap() {
			fmt.Fprintf(&logs, " %s=%v", k, v)
		}
	}
	for _, s := range secrets {
		if strings.Contains(dump, s) {
			t.Errorf("the card number %s is stored in the database", s)
		}
		if strings.Contains(logs.String(), s) {
			t.Errorf("the card number %s is in the log", s)
		}
	}
}

func TestQueryStates(t *testing.T) {
	e := setup(t, func(o *simunionpay.Options) { o.NotifyFailures = true })
	// Unknown order: 34, outcome unknown.
	r := e.query("GP00000000000000", e.clock.Now())
	if r.RespCode != unionpay.RespNotFound || r.Outcome != unionpay.Unknown {
		t.Errorf("unknown order: %+v", r)
	}
	// Paid.
	o, n := e.pay(100)
	if r := e.query(o.OrderID, o.TxnTime); r.Outcome != unionpay.Succeeded || r.QueryID != n.QueryID {
		t.Errorf("paid: %+v", r)
	}
	// Declined.
	od := e.order(200)
	fd, _ := e.client.ConsumeForm(od)
	e.post(fd, "sim_action=decline")
	if r := e.query(od.OrderID, od.TxnTime); r.Outcome != unionpay.Failed || r.OrigRespCode != "01" {
		t.Errorf("declined: %+v", r)
	}
	// With NotifyFailures, the failure is notified too.
	if ns := e.waitNotifications(od.OrderID, 1); ns[0].Outcome != unionpay.Failed {
		t.Errorf("failure notification %+v", ns[0])
	}
	// Never paid, then the pay timeout passes: failed with 39, and the
	// pay page refuses payment.
	ox := e.order(300)
	fx, _ := e.client.ConsumeForm(ox)
	resp, _ := e.post(fx, "")
	payURL := resp.Request.URL.String()
	if r := e.query(ox.OrderID, ox.TxnTime); r.Outcome != unionpay.Unknown {
		t.Errorf("before the timeout: %+v", r)
	}
	e.clock.Advance(16 * time.Minute)
	if r := e.query(ox.OrderID, ox.TxnTime); r.Outcome != unionpay.Failed || r.OrigRespCode != unionpay.RespOutOfTime {
		t.Errorf("after the timeout: %+v", r)
	}
	resp, err := http.PostForm(payURL, url.Values{"action": {"approve"}, "cardNumber": {simunionpay.TestCard}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := e.returned(string(b)); n.Outcome != unionpay.Failed || n.RespCode != unionpay.RespOutOfTime {
		t.Errorf("paying after the timeout: %+v", n)
	}
	// A form whose payTimeout has already passed is refused at once.
	late := e.order(400)
	late.TxnTime = e.clock.Now().Add(-time.Hour)
	late.PayTimeout = e.clock.Now().Add(-time.Minute)
	fl, _ := e.client.ConsumeForm(late)
	if resp, page := e.post(fl, ""); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, `data-resp-code="39"`) {
		t.Errorf("late form: %d\n%s", resp.StatusCode, page)
	}
}

func TestUnknownMerchantCertificate(t *testing.T) {
	e := setup(t, nil)
	// A merchant certificate the simulator was never told about.
	other, err := simunionpay.NewMerchant(t.TempDir(), t.TempDir(), merID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := unionpay.LoadKeyFile(other.KeyFile)
	roots, _ := unionpay.LoadCertPool(e.srv.RootFile())
	c, err := unionpay.NewClient(unionpay.Config{MerchantID: merID, FrontURL: e.srv.FrontURL(), BackURL: e.srv.BackURL(),
		QueryURL: e.srv.QueryURL(), FileURL: e.srv.FileURL(), Signer: key, SignCert: other.Cert, Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Query(context.Background(), "GP00000000000000", time.Now())
	if err != nil || r.RespCode != unionpay.RespSignature || r.Outcome != unionpay.Unknown {
		t.Errorf("unknown certId: %+v %v", r, err)
	}
	// The right certificate for another merchant ID.
	c2, _ := unionpay.NewClient(unionpay.Config{MerchantID: "898310048160002", FrontURL: e.srv.FrontURL(), BackURL: e.srv.BackURL(),
		QueryURL: e.srv.QueryURL(), FileURL: e.srv.FileURL(), Signer: mustKey(t, e.merchant.KeyFile), SignCert: e.merchant.Cert, Roots: roots})
	if r, err := c2.Query(context.Background(), "GP00000000000000", time.Now()); err != nil || r.RespCode != unionpay.RespSignature {
		t.Errorf("other merchant's certificate: %+v %v", r, err)
	}
}

func mustKey(t *testing.T, path string) *rsa.PrivateKey {
	k, err := unionpay.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

func TestDuplicateNotifications(t *testing.T) {
	e := setup(t, nil)
	e.faults(simunionpay.Faults{DuplicateNotifications: 3})
	o, n := e.pay(1000)
	ns := e.waitNotifications(o.OrderID, 3)
	time.Sleep(200 * time.Millisecond)
	ns = e.notificationsFor(o.OrderID)
	if len(ns) != 3 {
		t.Fatalf("%d notifications, want 3", len(ns))
	}
	for _, x := range ns {
		if x != n {
			t.Errorf("duplicate differs: %+v", x)
		}
	}
	recs, _ := e.srv.Notifications(context.Background(), n.QueryID)
	if len(recs) != 1 || len(recs[0].Deliveries) != 3 || recs[0].State != simunionpay.NotifyDelivered {
		t.Errorf("record %+v", recs)
	}
}

func TestReorderedNotifications(t *testing.T) {
	e := setup(t, nil)
	e.faults(simunionpay.Faults{ReorderNotifications: true, ReorderWindow: 3, ReorderHold: simunionpay.Duration(10 * time.Second)})
	var orders []string
	for range 3 {
		o, _ := e.pay(1000)
		orders = append(orders, o.OrderID)
	}
	waitFor(t, "three notifications", func() bool { return len(e.sink.received()) >= 3 })
	var got []string
	for _, r := range e.sink.received() {
		got = append(got, r.form.Get("orderId"))
	}
	want := []string{orders[2], orders[1], orders[0]}
	if !slices.Equal(got, want) {
		t.Errorf("arrival order %v, want %v (newest first)", got, want)
	}
	// Back to normal: the next one arrives on its own.
	e.faults(simunionpay.Faults{})
	o, _ := e.pay(1000)
	e.waitNotifications(o.OrderID, 1)
}

func TestDroppedNotifications(t *testing.T) {
	e := setup(t, nil)
	e.faults(simunionpay.Faults{DropNotifications: true})
	o, n := e.pay(1000)
	// Longer than the whole (scaled) resend schedule.
	time.Sleep(2 * time.Second)
	if got := e.sink.received(); len(got) != 0 {
		t.Fatalf("%d notifications arrived", len(got))
	}
	if r := e.query(o.OrderID, o.TxnTime); r.Outcome != unionpay.Succeeded || r.QueryID != n.QueryID {
		t.Errorf("query %+v", r)
	}
	recs, _ := e.srv.Notifications(context.Background(), n.QueryID)
	if len(recs) != 1 || recs[0].State != simunionpay.NotifyDropped || len(recs[0].Deliveries) != 0 {
		t.Errorf("record %+v", recs)
	}
}

func TestDelayedNotifications(t *testing.T) {
	e := setup(t, nil)
	e.faults(simunionpay.Faults{DelayNotifications: simunionpay.Duration(700 * time.Millisecond)})
	start := time.Now()
	o, _ := e.pay(1000)
	e.waitNotifications(o.OrderID, 1)
	if got := e.sink.received()[0].at.Sub(start); got < 700*time.Millisecond {
		t.Errorf("arrived after %v, before the delay", got)
	}
}

func TestResendSchedule(t *testing.T) {
	e := setup(t, nil)
	// The merchant fails the first two sends.
	e.sink.setStatus(func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	o, n := e.pay(1000)
	e.waitNotifications(o.OrderID, 3)
	got := e.sink.received()
	for i, want := range simunionpay.ResendSchedule[:2] {
		gap := got[i+1].at.Sub(got[i].at)
		scaled := time.Duration(float64(want) * testScale)
		if gap < scaled*9/10 {
			t.Errorf("send %d came %v after send %d, want at least %v", i+2, gap, i+1, scaled)
		}
	}
	waitFor(t, "delivered", func() bool {
		recs, _ := e.srv.Notifications(context.Background(), n.QueryID)
		return len(recs) == 1 && recs[0].State == simunionpay.NotifyDelivered
	})
	recs, _ := e.srv.Notifications(context.Background(), n.QueryID)
	if recs[0].Sends != 3 || recs[0].Deliveries[0].HTTPStatus != 500 || recs[0].Deliveries[2].HTTPStatus != 200 {
		t.Errorf("record %+v", recs[0])
	}
	time.Sleep(500 * time.Millisecond)
	if len(e.sink.received()) != 3 {
		t.Errorf("sent again after a 200")
	}

	// A merchant that never answers 200 gets five sends, then no more.
	e.sink.setStatus(func(int) int { return http.StatusServiceUnavailable })
	before := len(e.sink.received())
	o2, n2 := e.pay(1000)
	waitFor(t, "given up", func() bool {
		recs, _ := e.srv.Notifications(context.Background(), n2.QueryID)
		return len(recs) == 1 && recs[0].State == simunionpay.NotifyGivenUp
	})
	time.Sleep(300 * time.Millisecond)
	if got := len(e.sink.received()) - before; got != simunionpay.MaxSends {
		t.Errorf("%d sends, want %d", got, simunionpay.MaxSends)
	}
	if ns := e.notificationsFor(o2.OrderID); len(ns) != simunionpay.MaxSends {
		t.Errorf("%d notifications of %s", len(ns), o2.OrderID)
	}
}

func TestQueryUnknownFault(t *testing.T) {
	e := setup(t, nil)
	o, _ := e.pay(1000)
	e.faults(simunionpay.Faults{QueryUnknown: 3})
	var codes []string
	for range 3 {
		r := e.query(o.OrderID, o.TxnTime)
		if r.Outcome != unionpay.Unknown {
			t.Errorf("under the fault: %+v", r)
		}
		codes = append(codes, r.RespCode)
	}
	if strings.Join(codes, ",") != "03,04,05" {
		t.Errorf("codes %v", codes)
	}
	if r := e.query(o.OrderID, o.TxnTime); r.Outcome != unionpay.Succeeded {
		t.Errorf("after the fault: %+v", r)
	}
	e.faults(simunionpay.Faults{QueryUnknownUntil: time.Now().Add(400 * time.Millisecond), QueryUnknownCode: "04"})
	if r := e.query(o.OrderID, o.TxnTime); r.RespCode != "04" || r.Outcome != unionpay.Unknown {
		t.Errorf("for a while: %+v", r)
	}
	time.Sleep(500 * time.Millisecond)
	if r := e.query(o.OrderID, o.TxnTime); r.Outcome != unionpay.Succeeded {
		t.Errorf("after a while: %+v", r)
	}
}

func (e *env) refundRequest(orig unionpay.Notification, amount money.Fen) unionpay.RefundRequest {
	e.seq++
	now := e.clock.Now()
	return unionpay.RefundRequest{OrderID: fmt.Sprintf("RF%s%04d", now.Format("20060102150405"), e.seq), TxnTime: now,
		OrigQueryID: orig.QueryID, Amount: amount, BackURL: e.sink.URL()}
}

func TestRefunds(t *testing.T) {
	e := setup(t, nil)
	ctx := context.Background()
	_, paid := e.pay(10000)

	r1 := e.refundRequest(paid, 3000)
	a, err := e.client.Refund(ctx, r1)
	if err != nil || a.RespCode != "00" || a.Outcome != unionpay.Unknown || a.QueryID == "" {
		t.Fatalf("partial refund: %+v %v", a, err)
	}
	// Resent as it is: the same answer.
	again, err := e.client.Refund(ctx, r1)
	if err != nil || again.RespCode != "00" || again.QueryID != a.QueryID {
		t.Errorf("resend: %+v %v", again, err)
	}
	// Same orderId and txnTime, other amount: duplicate.
	changed := r1
	changed.Amount = 3001
	if d, err := e.client.Refund(ctx, changed); err != nil || d.RespCode != unionpay.RespDuplicate || d.Outcome != unionpay.Unknown {
		t.Errorf("changed resend: %+v %v", d, err)
	}
	n := e.waitNotifications(r1.OrderID, 1)[0]
	if n.TxnType != unionpay.TxnRefund || n.Amount != 3000 || n.OrigQueryID != paid.QueryID || n.QueryID != a.QueryID || n.Outcome != unionpay.Succeeded {
		t.Errorf("refund notification %+v", n)
	}
	if q := e.query(r1.OrderID, r1.TxnTime); q.Outcome != unionpay.Succeeded || q.TxnType != unionpay.TxnRefund || q.Amount != 3000 {
		t.Errorf("refund query %+v", q)
	}
	// More than what is left: refused.
	if x, err := e.client.Refund(ctx, e.refundRequest(paid, 7001)); err != nil || x.RespCode != unionpay.RespAmountLimit || x.Outcome != unionpay.Failed {
		t.Errorf("over the rest: %+v %v", x, err)
	}
	// The rest, in full.
	r2 := e.refundRequest(paid, 7000)
	if x, err := e.client.Refund(ctx, r2); err != nil || x.RespCode != "00" {
		t.Fatalf("the rest: %+v %v", x, err)
	}
	e.waitNotifications(r2.OrderID, 1)
	if x, err := e.client.Refund(ctx, e.refundRequest(paid, 1)); err != nil || x.RespCode != unionpay.RespAlreadyRefund || x.Outcome != unionpay.Failed {
		t.Errorf("after the full refund: %+v %v", x, err)
	}
	refunds, _ := e.srv.Refunds(ctx, paid.QueryID)
	var sum money.Fen
	for _, r := range refunds {
		if r.Status == simunionpay.StatusSucceeded {
			sum += r.Amount
		}
	}
	if len(refunds) != 2 || sum != 10000 {
		t.Errorf("refunds %+v", refunds)
	}
	// The same refund sent ten times at once: one refund, the same answer
	// each time.
	_, paid2 := e.pay(5000)
	same := e.refundRequest(paid2, 1200)
	answers := make([]unionpay.Accepted, 10)
	errs := make([]error, 10)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); answers[i], errs[i] = e.client.Refund(ctx, same) }()
	}
	wg.Wait()
	for i := range 10 {
		if errs[i] != nil || answers[i].RespCode != "00" || answers[i].QueryID != answers[0].QueryID {
			t.Errorf("concurrent resend %d: %+v %v", i, answers[i], errs[i])
		}
	}
	if rs, _ := e.srv.Refunds(ctx, paid2.QueryID); len(rs) != 1 || rs[0].Amount != 1200 {
		t.Errorf("concurrent resends recorded %+v", rs)
	}
	// Refund of a consume that does not exist, or was declined.
	ghost := e.refundRequest(paid, 1)
	ghost.OrigQueryID = "999999999999999999999"
	if x, err := e.client.Refund(ctx, ghost); err != nil || x.RespCode != unionpay.RespOrigState {
		t.Errorf("no such consume: %+v %v", x, err)
	}
}

func TestTransientRefundFailures(t *testing.T) {
	e := setup(t, nil)
	ctx := context.Background()
	_, paid := e.pay(10000)

	// HTTP 503 twice, then the resend goes through.
	e.faults(simunionpay.Faults{RefundFailures: 2})
	r := e.refundRequest(paid, 1000)
	for i := range 2 {
		if _, err := e.client.Refund(ctx, r); !errors.Is(err, unionpay.ErrUnavailable) {
			t.Errorf("failure %d: %v", i+1, err)
		}
	}
	if a, err := e.client.Refund(ctx, r); err != nil || a.RespCode != "00" {
		t.Errorf("after the failures: %+v %v", a, err)
	}
	e.waitNotifications(r.OrderID, 1)

	// 03 and nothing recorded: the query says 34, the resend works.
	e.faults(simunionpay.Faults{RefundFailures: 1, RefundFailureMode: simunionpay.RefundFail03})
	r = e.refundRequest(paid, 1000)
	if a, err := e.client.Refund(ctx, r); err != nil || a.RespCode != "03" || a.Outcome != unionpay.Unknown {
		t.Errorf("03: %+v %v", a, err)
	}
	if q := e.query(r.OrderID, r.TxnTime); q.RespCode != unionpay.RespNotFound {
		t.Errorf("after 03: %+v", q)
	}
	if a, err := e.client.Refund(ctx, r); err != nil || a.RespCode != "00" {
		t.Errorf("resend after 03: %+v %v", a, err)
	}

	// 03 but processed: only a query (or the notification) tells.
	e.faults(simunionpay.Faults{RefundFailures: 1, RefundFailureMode: simunionpay.RefundFail03Processed})
	r = e.refundRequest(paid, 1000)
	if a, err := e.client.Refund(ctx, r); err != nil || a.RespCode != "03" {
		t.Errorf("03-processed: %+v %v", a, err)
	}
	waitFor(t, "the refund to succeed", func() bool { return e.query(r.OrderID, r.TxnTime).Outcome == unionpay.Succeeded })
	a, err := e.client.Refund(ctx, r)
	if err != nil || a.RespCode != "00" {
		t.Errorf("resend after 03-processed: %+v %v", a, err)
	}
	refunds, _ := e.srv.Refunds(ctx, paid.QueryID)
	if len(refunds) != 3 {
		t.Errorf("%d refunds recorded, want 3: %+v", len(refunds), refunds)
	}
}

func TestCancel(t *testing.T) {
	e := setup(t, nil)
	ctx := context.Background()
	o, paid := e.pay(4321)
	// Not the full amount: 36.
	if a, err := e.client.Cancel(ctx, e.refundRequest(paid, 4320)); err != nil || a.RespCode != unionpay.RespOrigMismatch || a.Outcome != unionpay.Failed {
		t.Errorf("partial cancel: %+v %v", a, err)
	}
	c := e.refundRequest(paid, 4321)
	if a, err := e.client.Cancel(ctx, c); err != nil || a.RespCode != "00" {
		t.Fatalf("cancel: %+v %v", a, err)
	}
	n := e.waitNotifications(c.OrderID, 1)[0]
	if n.TxnType != unionpay.TxnCancel || n.Amount != 4321 || n.OrigQueryID != paid.QueryID {
		t.Errorf("cancel notification %+v", n)
	}
	if q := e.query(c.OrderID, c.TxnTime); q.Outcome != unionpay.Succeeded || q.TxnType != unionpay.TxnCancel {
		t.Errorf("cancel query %+v", q)
	}
	// The consume itself still reads as paid; refunding it now is refused.
	if q := e.query(o.OrderID, o.TxnTime); q.Outcome != unionpay.Succeeded {
		t.Errorf("consume after cancel %+v", q)
	}
	if a, err := e.client.Refund(ctx, e.refundRequest(paid, 1)); err != nil || a.RespCode != unionpay.RespAlreadyRefund {
		t.Errorf("refund after cancel: %+v %v", a, err)
	}
	// Yesterday's consume cannot be cancelled: refund it.
	_, old := e.pay(5000)
	e.clock.Advance(24 * time.Hour)
	if a, err := e.client.Cancel(ctx, e.refundRequest(old, 5000)); err != nil || a.RespCode != unionpay.RespOrigState || a.Outcome != unionpay.Failed {
		t.Errorf("cancel of yesterday's consume: %+v %v", a, err)
	}
	if a, err := e.client.Refund(ctx, e.refundRequest(old, 5000)); err != nil || a.RespCode != "00" {
		t.Errorf("refund of yesterday's consume: %+v %v", a, err)
	}
}

func TestReconciliationFile(t *testing.T) {
	e := setup(t, nil)
	ctx := context.Background()
	_, p1 := e.pay(10000)
	_, p2 := e.pay(2500)
	od := e.order(999)
	fd, _ := e.client.ConsumeForm(od)
	e.post(fd, "sim_action=decline")
	pending := e.order(777)
	fp, _ := e.client.ConsumeForm(pending)
	e.post(fp, "")
	r := e.refundRequest(p1, 4000)
	if _, err := e.client.Refund(ctx, r); err != nil {
		t.Fatal(err)
	}
	c := e.refundRequest(p2, 2500)
	if _, err := e.client.Cancel(ctx, c); err != nil {
		t.Fatal(err)
	}
	e.waitNotifications(r.OrderID, 1)
	e.waitNotifications(c.OrderID, 1)

	today := unionpay.SettleDateOf(e.clock.Now())
	recs, err := e.client.DownloadFile(ctx, today)
	if err != nil {
		t.Fatal(err)
	}
	succeeded, _ := e.srv.Transactions(ctx, simunionpay.TxnFilter{MerID: merID, Status: simunionpay.StatusSucceeded})
	want := map[string]simunionpay.Transaction{}
	for _, t := range succeeded {
		want[t.QueryID] = t
	}
	if len(recs) != 4 || len(want) != 4 {
		t.Fatalf("%d records, %d successful transactions, want 4: %+v", len(recs), len(want), recs)
	}
	var consumes, reversals money.Fen
	for _, rec := range recs {
		w, ok := want[rec.QueryID]
		if !ok || rec.Amount != w.Amount || rec.TxnType != w.TxnType || rec.OrderID != w.OrderID || rec.OrigQueryID != w.OrigQueryID ||
			unionpay.FormatTime(rec.TxnTime) != w.TxnTime || rec.SettleDate != today || rec.RespCode != "00" {
			t.Errorf("record %+v does not match %+v", rec, w)
		}
		if rec.TxnType == unionpay.TxnConsume {
			consumes += rec.Amount
		} else {
			reversals += rec.Amount
		}
	}
	if consumes != 12500 || reversals != 6500 {
		t.Errorf("totals %d / %d", consumes, reversals)
	}
	// Another day's file lists none of them.
	if other, err := e.client.DownloadFile(ctx, unionpay.SettleDateOf(e.clock.Now().Add(-48*time.Hour))); err != nil || len(other) != 0 {
		t.Errorf("another day: %+v %v", other, err)
	}
}

func TestForgedNotifications(t *testing.T) {
	e := setup(t, nil)
	o, _ := e.pay(10000)
	real := e.waitNotifications(o.OrderID, 1)[0]
	form := e.sink.received()[0].form
	clone := func() url.Values {
		c := url.Values{}
		for k, v := range form {
			c[k] = slices.Clone(v)
		}
		return c
	}
	if n, err := e.client.ParseNotification(clone()); err != nil || n != real {
		t.Fatalf("the real one: %v", err)
	}
	// Tampered amount.
	f := clone()
	f.Set("txnAmt", "1")
	if _, err := e.client.ParseNotification(f); !errors.Is(err, unionpay.ErrBadSignature) {
		t.Errorf("tampered amount: %v", err)
	}
	// Unknown order? The notification verifies; GridPay must check the
	// order itself. Here: signed by another key under the real certificate.
	forger, _ := rsa.GenerateKey(rand.Reader, 2048)
	f = clone()
	f.Set("txnAmt", "1")
	resign(t, f, forger, f.Get("signPubKeyCert"))
	if _, err := e.client.ParseNotification(f); !errors.Is(err, unionpay.ErrBadSignature) {
		t.Errorf("bad signature: %v", err)
	}
	// A whole other PKI that also calls itself China UnionPay.
	otherRoot, otherRootKey := makeCA(t)
	fakeCert := issue(t, otherRoot, otherRootKey, &forger.PublicKey, "China UnionPay", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	f = clone()
	resign(t, f, forger, fakeCert)
	if _, err := e.client.ParseNotification(f); !errors.Is(err, unionpay.ErrBadCertificate) {
		t.Errorf("other root: %v", err)
	}
	// The real root, but an expired certificate (the simulator's root key
	// is at hand in its state directory).
	root, err := unionpay.LoadCertificateFile(e.srv.RootFile())
	if err != nil {
		t.Fatal(err)
	}
	rootKey := mustKey(t, filepath.Join(e.opts.StateDir, "root-key.pem"))
	expired := issue(t, root, rootKey, &forger.PublicKey, "China UnionPay", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	f = clone()
	resign(t, f, forger, expired)
	if _, err := e.client.ParseNotification(f); !errors.Is(err, unionpay.ErrBadCertificate) {
		t.Errorf("expired certificate: %v", err)
	}
	// The real root, a valid certificate, but not UnionPay's organisation.
	wrongOrg := issue(t, root, rootKey, &forger.PublicKey, "Someone Else", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	f = clone()
	resign(t, f, forger, wrongOrg)
	if _, err := e.client.ParseNotification(f); !errors.Is(err, unionpay.ErrBadCertificate) {
		t.Errorf("wrong organisation: %v", err)
	}
	// Posted twice in the same body.
	f = clone()
	f.Add("respCode", "00")
	if _, err := e.client.ParseNotification(f); !errors.Is(err, unionpay.ErrMalformed) {
		t.Errorf("field twice: %v", err)
	}
}

func resign(t *testing.T, f url.Values, key *rsa.PrivateKey, certPEM string) {
	t.Helper()
	m := map[string]string{}
	for k := range f {
		m[k] = f.Get(k)
	}
	m["signPubKeyCert"] = certPEM
	delete(m, "signature")
	sig, err := unionpay.Sign(context.Background(), key, m)
	if err != nil {
		t.Fatal(err)
	}
	f.Set("signPubKeyCert", certPEM)
	f.Set("signature", sig)
}

func makeCA(t *testing.T) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "UnionPay Root CA", Organization: []string{"China UnionPay"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *rsa.PrivateKey, pub *rsa.PublicKey, org string, from, to time.Time) string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "UnionPay Gateway Signing", Organization: []string{org}},
		NotBefore: from, NotAfter: to, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// A restart in the middle of a test loses nothing: an undelivered
// notification and an accepted refund carry on.
func TestRestart(t *testing.T) {
	e := setup(t, func(o *simunionpay.Options) { o.ProcessDelay = 15 * time.Minute }) // scaled: 1.8 s
	rootBefore, _ := os.ReadFile(e.srv.RootFile())
	e.sink.setStatus(func(n int) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	o, paid := e.pay(10000)
	waitFor(t, "the first send", func() bool { return len(e.sink.received()) >= 1 })
	r := e.refundRequest(paid, 500)
	if a, err := e.client.Refund(context.Background(), r); err != nil || a.RespCode != "00" {
		t.Fatalf("refund: %+v %v", a, err)
	}
	if rs, _ := e.srv.Refunds(context.Background(), paid.QueryID); len(rs) != 1 || rs[0].Status != simunionpay.StatusPending {
		t.Fatalf("the refund is not pending before the restart: %+v", rs)
	}
	e.restart()
	if rootAfter, _ := os.ReadFile(e.srv.RootFile()); string(rootAfter) != string(rootBefore) {
		t.Error("the root changed across the restart")
	}
	ns := e.waitNotifications(o.OrderID, 2)
	if ns[1] != paid {
		t.Errorf("resend after restart %+v", ns[1])
	}
	rn := e.waitNotifications(r.OrderID, 1)[0]
	if rn.Amount != 500 || rn.Outcome != unionpay.Succeeded {
		t.Errorf("refund after restart %+v", rn)
	}
	if q := e.query(o.OrderID, o.TxnTime); q.Outcome != unionpay.Succeeded {
		t.Errorf("query after restart %+v", q)
	}
}

func TestAdminEndpoint(t *testing.T) {
	e := setup(t, nil)
	req, _ := http.NewRequest(http.MethodPut, e.srv.AdminURL()+"/faults", strings.NewReader(`{"auto_approve":true,"duplicate_notifications":2}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !e.srv.Faults().AutoApprove || e.srv.Faults().DuplicateNotifications != 2 {
		t.Errorf("PUT /faults: %d %+v", resp.StatusCode, e.srv.Faults())
	}
	req, _ = http.NewRequest(http.MethodPut, e.srv.AdminURL()+"/faults", strings.NewReader(`{"refund_failure_mode":"boom"}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad faults accepted: %v", err)
	}
	o := e.order(100)
	f, _ := e.client.ConsumeForm(o)
	e.post(f, "")
	e.waitNotifications(o.OrderID, 2)
	resp, err = http.Get(e.srv.AdminURL() + "/transactions?order_id=" + o.OrderID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"status": "succeeded"`) || !strings.Contains(string(b), o.OrderID) {
		t.Errorf("GET /transactions:\n%s", b)
	}
	if _, err := simunionpay.Start(context.Background(), simunionpay.Options{DSN: e.dsn, StateDir: t.TempDir(), AdminListen: "0.0.0.0:0"}); err == nil {
		t.Error("an admin endpoint on a public address was accepted")
	}
}
