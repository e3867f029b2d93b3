//go:build integration

package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/provision"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	simplatform "github.com/gridpay/gridpay/sim/platform"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

// payStack is a stack with payments: the UnionPay simulator, worker,
// gateway and the platform simulator all running.
func payStack(t testing.TB) *stack {
	s := newStack(t)
	s.startSimulator()
	s.startUnionPay()
	s.startWorker()
	s.startGateway()
	return s
}

// payOrder asks the gateway for a payment of bills (the client signs it
// with the key) and returns the order.
func (k *usbKey) payOrder(bills ...string) api.PaymentOrder {
	k.s.t.Helper()
	var o api.PaymentOrder
	k.clientJSON(&o, "pay", "--bill", strings.Join(bills, ","), "--no-wait")
	if o.PayURL == "" || o.OrderID == "" {
		k.s.t.Fatalf("no order: %+v", o)
	}
	return o
}

// payer opens the pay link and approves (or declines) like a person.
func (s *stack) payer(link string, decline bool) {
	s.t.Helper()
	args := []string{"pay", link}
	if decline {
		args = append(args, "--decline")
	}
	s.run("unionpay-sim", args...)
}

// waitPayment polls the payment until its status is want (or final).
func (k *usbKey) waitPayment(key, want string, within time.Duration) api.PaymentStatus {
	k.s.t.Helper()
	deadline := time.Now().Add(within)
	var st api.PaymentStatus
	for {
		r := k.client("pay", "--status", key, "--json")
		if err := json.Unmarshal([]byte(r.out), &st); err != nil {
			k.s.t.Fatalf("pay --status: %s\n--- gateway log ---\n%s\n--- worker log ---\n%s", r, tail(k.s.logOf("gateway"), 3), tail(k.s.logOf("worker"), 25))
		}
		if st.Status == want {
			return st
		}
		if st.Final || time.Now().After(deadline) {
			k.s.t.Fatalf("payment %s is %s (%s), want %s", key, st.Status, st.Reason, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// overdueBill returns the oldest overdue bill of the key's customer.
func (k *usbKey) overdueBill() platform.Bill {
	k.s.t.Helper()
	var a api.ArrearsSummary
	k.clientJSON(&a, "arrears")
	if len(a.Bills) == 0 {
		k.s.t.Fatalf("customer %s has no overdue bill", k.customerID)
	}
	return a.Bills[0]
}

// checkMoney asserts the money invariant over GridPay, the platform and
// UnionPay: every charge is posted exactly once or refunded exactly once,
// and the three agree on every amount.
func (s *stack) checkMoney() {
	s.t.Helper()
	ctx := context.Background()
	db := s.db()
	vs, err := store.CheckPaymentInvariants(ctx, db)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, v := range vs {
		if !v.Open {
			s.t.Errorf("money invariant: payment %s (order %s, %s): %s", v.WorkflowID, v.OrderID, v.Status, v.Problem)
		}
	}
	plat, err := simplatform.Open(ctx, s.simDSN, simplatform.OpenOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	defer plat.Close()
	up, err := pgxpool.New(ctx, s.upDSN)
	if err != nil {
		s.t.Fatal(err)
	}
	defer up.Close()
	rows, err := db.Query(ctx, `SELECT customer_id, idempotency_key, coalesce(order_id, ''), status, amount FROM payments WHERE order_id IS NOT NULL`)
	if err != nil {
		s.t.Fatal(err)
	}
	type pay struct {
		customer, key, order, status string
		amount                       int64
	}
	var pays []pay
	for rows.Next() {
		var p pay
		if err := rows.Scan(&p.customer, &p.key, &p.order, &p.status, &p.amount); err != nil {
			s.t.Fatal(err)
		}
		pays = append(pays, p)
	}
	rows.Close()
	for _, p := range pays {
		posting, err := plat.Service().Payment(ctx, activities.PostingReference(p.customer, p.key))
		posted := err == nil && posting.Status == platform.PaymentPosted
		if posted != (p.status == string(store.PaymentPosted)) {
			s.t.Errorf("payment %s is %s at GridPay but posted=%v at the platform (%v)", p.key, p.status, posted, err)
		}
		if posted && int64(posting.Amount) != p.amount {
			s.t.Errorf("payment %s: GridPay %d fen, platform %d fen", p.key, p.amount, posting.Amount)
		}
		var charged, refunded int64
		err = up.QueryRow(ctx, `SELECT
			coalesce(sum(amount) FILTER (WHERE txn_type = '01' AND status = 'succeeded'), 0),
			coalesce((SELECT sum(r.amount) FROM unionpay_sim.transactions r JOIN unionpay_sim.transactions c ON r.orig_query_id = c.query_id
			          WHERE c.order_id = $1 AND r.txn_type IN ('04', '31') AND r.status = 'succeeded'), 0)
			FROM unionpay_sim.transactions WHERE order_id = $1`, p.order).Scan(&charged, &refunded)
		if err != nil {
			s.t.Fatal(err)
		}
		switch p.status {
		case string(store.PaymentPosted):
			if charged != p.amount || refunded != 0 {
				s.t.Errorf("posted payment %s: UnionPay charged %d, refunded %d, want %d and 0", p.key, charged, refunded, p.amount)
			}
		case string(store.PaymentRefunded):
			if charged != p.amount || refunded != p.amount {
				s.t.Errorf("refunded payment %s: UnionPay charged %d, refunded %d, want %d twice", p.key, charged, refunded, p.amount)
			}
		case string(store.PaymentExpired):
			if charged != 0 {
				s.t.Errorf("expired payment %s was charged %d", p.key, charged)
			}
		}
	}
}

// One bill paid end to end with duplicated and reordered notifications:
// posted exactly once.
func TestPaymentDuplicateAndReorderedNotifications(t *testing.T) {
	s := payStack(t)
	s.startUnionPay("--duplicate-notifications", "3", "--reorder-notifications")
	k := s.provision(s.customer("--overdue"), "pay-dup")
	bill := k.overdueBill()
	o := k.payOrder(bill.ID)
	if o.Amount != bill.AmountDue {
		t.Fatalf("order amount %d, bill due %d", o.Amount, bill.AmountDue)
	}
	s.payer(o.PayURL, false)
	st := k.waitPayment(o.Key, "posted", time.Minute)
	if st.QueryID == "" || st.PostedAt == nil {
		t.Fatalf("no receipt: %+v", st)
	}
	// The bill is settled at the platform; paying it again is refused.
	r := k.client("pay", "--bill", bill.ID, "--no-wait")
	if r.code == 0 {
		t.Fatalf("a settled bill was paid again: %s", r)
	}
	time.Sleep(3 * time.Second) // let every duplicate arrive
	s.checkMoney()
}

// Notifications dropped: the saga learns the outcome by querying.
func TestPaymentDroppedNotificationsResolvedByQuery(t *testing.T) {
	s := payStack(t)
	s.startUnionPay("--drop-notifications", "--query-unknown", "3")
	k := s.provision(s.customer("--overdue"), "pay-drop")
	o := k.payOrder(k.overdueBill().ID)
	s.payer(o.PayURL, false)
	k.waitPayment(o.Key, "posted", time.Minute)
	s.checkMoney()
}

// Forged notifications (bad signature, tampered amount, unknown order) are
// refused or ignored, audited, and move nothing.
func TestForgedNotifications(t *testing.T) {
	s := payStack(t)
	k := s.provision(s.customer("--overdue"), "pay-forge")
	o := k.payOrder(k.overdueBill().ID)
	notify := fmt.Sprintf("http://127.0.0.1:%d/unionpay/notify", s.publicPort)
	forged := url.Values{"version": {"5.1.0"}, "encoding": {"UTF-8"}, "signMethod": {"01"}, "txnType": {"01"}, "txnSubType": {"01"},
		"merId": {"898310048160001"}, "orderId": {o.OrderID}, "txnTime": {time.Now().In(platform.Shanghai).Format("20060102150405")},
		"txnAmt": {fmt.Sprint(int64(o.Amount))}, "queryId": {"123456789012345678901"}, "respCode": {"00"},
		"settleDate": {time.Now().In(platform.Shanghai).Format("0102")}, "signature": {"Zm9yZ2Vk"}, "signPubKeyCert": {"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"}}
	resp, err := http.PostForm(notify, forged)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged notification answered %d", resp.StatusCode)
	}
	// Signed with UnionPay's real key, then the amount changed: refused.
	gwKey, err := unionpay.LoadKeyFile(filepath.Join(s.dir, "up", "gateway-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	signed := func(orderID string) url.Values {
		f := map[string]string{}
		for k, v := range forged {
			f[k] = v[0]
		}
		delete(f, "signature")
		f["orderId"] = orderID
		f["signPubKeyCert"] = readFile(t, filepath.Join(s.dir, "up", "gateway.pem"))
		sig, err := unionpay.Sign(context.Background(), gwKey, f)
		if err != nil {
			t.Fatal(err)
		}
		f["signature"] = sig
		v := url.Values{}
		for k, x := range f {
			v.Set(k, x)
		}
		return v
	}
	tampered := signed(o.OrderID)
	tampered.Set("txnAmt", "1")
	if code := postNotify(t, notify, tampered); code != http.StatusBadRequest {
		t.Fatalf("tampered amount answered %d", code)
	}
	// Genuinely signed, but for an order GridPay never made: acknowledged,
	// audited, nothing moves.
	if code := postNotify(t, notify, signed("GP00000000000000000000000000unknown"[:32])); code != http.StatusOK {
		t.Fatalf("unknown order answered %d\n%s", code, tail(s.logOf("gateway"), 4))
	}

	st := k.waitPayment(o.Key, "awaiting_payment", time.Second)
	if st.PaidAt != nil {
		t.Fatal("a forged notification marked the payment paid")
	}
	count := func(code string) (n int) {
		if err := s.db().QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'gateway.refuse' AND detail->>'code' = $1`, code).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("forged_notification"); n != 2 {
		t.Fatalf("%d audit entries for the forged notifications, want 2", n)
	}
	if n := count("unknown_order"); n != 1 {
		t.Fatalf("%d audit entries for the unknown order, want 1", n)
	}
	s.checkMoney()
}

func postNotify(t *testing.T, notify string, form url.Values) int {
	t.Helper()
	resp, err := http.PostForm(notify, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The platform is down when the charge arrives: the payment is posted once
// it returns. Then a bill settled at the counter meanwhile: refunded once.
func TestPlatformDownThenRefusal(t *testing.T) {
	s := payStack(t)
	k := s.provision(s.customer("--overdue"), "pay-down")

	o := k.payOrder(k.overdueBill().ID) // the platform checks the bill...
	s.stop("platform-sim")              // ...then goes down before the charge
	s.payer(o.PayURL, false)
	k.waitPayment(o.Key, "paid", 30*time.Second)
	time.Sleep(3 * time.Second) // postings fail meanwhile
	s.startSimulator()
	k.waitPayment(o.Key, "posted", time.Minute)

	// A second bill is paid, but settled at the counter before GridPay posts.
	bill := k.overdueBill()
	o2 := k.payOrder(bill.ID)
	s.stop("platform-sim")
	s.payer(o2.PayURL, false)
	k.waitPayment(o2.Key, "paid", 30*time.Second)
	settleAtCounter(t, s, k.customerID, bill)
	s.startSimulator()
	st := k.waitPayment(o2.Key, "refunded", time.Minute)
	if st.Reason == "" || st.RefundedAt == nil {
		t.Fatalf("refund without a reason shown: %+v", st)
	}
	s.checkMoney()
}

// settleAtCounter pays a bill at the power company's counter (directly in
// the platform's books), as happens when a customer pays twice.
func settleAtCounter(t *testing.T, s *stack, customerID string, bill platform.Bill) {
	t.Helper()
	ctx := context.Background()
	plat, err := simplatform.Open(ctx, s.simDSN, simplatform.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer plat.Close()
	due, err := plat.Service().Bill(ctx, customerID, bill.ID)
	if err != nil {
		t.Fatal(err)
	}
	if due.AmountDue <= 0 {
		t.Fatalf("bill %s has nothing due at the counter: %+v", bill.ID, due)
	}
	_, err = plat.Service().PostPayment(ctx, platform.PostPayment{Reference: "counter-" + bill.ID, CustomerID: customerID, Amount: due.AmountDue,
		Allocations: []platform.Allocation{{BillID: bill.ID, Amount: due.AmountDue}}, Channel: "counter", ChannelTxnID: "C-" + bill.ID, PaidAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
}

// The worker is killed after the charge and before the posting: after a
// restart the payment is posted exactly once.
func TestWorkerKilledAfterChargeBeforePosting(t *testing.T) {
	s := payStack(t)
	k := s.provision(s.customer("--overdue"), "pay-kill")
	o := k.payOrder(k.overdueBill().ID)
	s.stop("platform-sim") // so that the charge cannot be posted yet
	s.payer(o.PayURL, false)
	k.waitPayment(o.Key, "paid", 30*time.Second)
	s.kill("worker")
	s.startSimulator()
	time.Sleep(time.Second)
	s.startWorker()
	k.waitPayment(o.Key, "posted", time.Minute)
	s.checkMoney()
}

// The same signed payment sent ten times at once (a double click, a
// retrying proxy): one payment, the same answer each time.
func TestSameKeyTenTimesConcurrently(t *testing.T) {
	s := payStack(t)
	k := s.provision(s.customer("--overdue"), "pay-ten")
	bill := k.overdueBill()
	ctx := context.Background()

	tok, err := hsm.OpenToken(s.module, hsm.Selector{Label: k.label}, []byte("pin-"+k.label), hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	signer, err := tok.Signer(ctx, hsm.KeyRef{Label: provision.KeyLabel})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := tok.Certificate(ctx, hsm.KeyRef{Label: provision.KeyLabel})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tok.Certificate(ctx, hsm.KeyRef{Label: provision.CALabel})
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, protocol.MinNonceSize)
	_, _ = rand.Read(nonce)
	enc, err := protocol.EncodePaymentInstruction(protocol.PaymentInstruction{
		Version: protocol.PaymentInstructionVersion, IdempotencyKey: "p-ten-times-concurrently-0001",
		CustomerID: k.customerID, TokenSerial: tok.Info().Serial, CertSerial: pki.SerialHex(leaf.SerialNumber),
		Kind: protocol.PayBills, BillIDs: []string{bill.ID}, Amount: bill.AmountDue, Currency: "CNY",
		Nonce: nonce, Timestamp: time.Now().UTC().Truncate(time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signer.Sign(rand.Reader, protocol.PaymentInstructionDigest(enc), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(api.PaymentRequest{Instruction: enc, Signature: sig})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(readFile(t, filepath.Join(s.dir, "pki", "root.pem")))) {
		t.Fatal("root.pem")
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: roots,
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, ca.Raw}, PrivateKey: signer, Leaf: leaf}},
	}}}
	orders := make([]api.PaymentOrder, 10)
	errs := make([]error, 10)
	var wg sync.WaitGroup
	for i := range orders {
		wg.Go(func() {
			resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", s.gwPort, api.PathPayments), "application/json", bytes.NewReader(body))
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				errs[i] = fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
				return
			}
			errs[i] = json.NewDecoder(resp.Body).Decode(&orders[i])
		})
	}
	wg.Wait()
	for i := range orders {
		if errs[i] != nil {
			t.Fatalf("attempt %d: %v", i, errs[i])
		}
		if orders[i] != orders[0] {
			t.Fatalf("attempt %d got another answer: %+v vs %+v", i, orders[i], orders[0])
		}
	}
	s.payer(orders[0].PayURL, false)
	k.waitPayment(orders[0].Key, "posted", time.Minute)
	var n int
	if err := s.db().QueryRow(ctx, `SELECT count(*) FROM payments WHERE customer_id = $1`, k.customerID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d payments for one key", n)
	}
	s.checkMoney()
}

// tail returns the last n lines of a log.
func tail(log string, n int) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
