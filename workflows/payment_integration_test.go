//go:build integration

package workflows

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// igateway is UnionPay in process: orders are charged when a test says so.
type igateway struct {
	mu      sync.Mutex
	charged map[string]money.Fen // orderID → amount
	refunds map[string]unionpay.RefundRequest
	forms   int
}

func (g *igateway) ConsumeForm(o unionpay.Order) (unionpay.Form, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forms++
	return unionpay.Form{Action: "https://gateway.test/pay", Fields: map[string]string{"orderId": o.OrderID, "txnAmt": fmt.Sprint(int64(o.Amount))}}, nil
}

func (g *igateway) Query(_ context.Context, orderID string, txnTime time.Time) (unionpay.QueryResult, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if amt, ok := g.charged[orderID]; ok {
		return unionpay.QueryResult{OrderID: orderID, TxnTime: txnTime, RespCode: "00", OrigRespCode: "00", TxnType: "01", QueryID: "Q" + orderID[2:12],
			Amount: amt, SettleDate: "0301", Outcome: unionpay.Succeeded}, nil
	}
	if r, ok := g.refunds[orderID]; ok {
		return unionpay.QueryResult{OrderID: orderID, TxnTime: txnTime, RespCode: "00", OrigRespCode: "00", TxnType: "04", QueryID: "R" + orderID[2:12],
			Amount: r.Amount, SettleDate: "0301", Outcome: unionpay.Succeeded}, nil
	}
	return unionpay.QueryResult{OrderID: orderID, TxnTime: txnTime, RespCode: "34", RespMsg: "no such order"}, nil
}

func (g *igateway) Refund(_ context.Context, r unionpay.RefundRequest) (unionpay.Accepted, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.refunds[r.OrderID]; dup {
		return unionpay.Accepted{RespCode: "12", Outcome: unionpay.Unknown}, nil
	}
	g.refunds[r.OrderID] = r
	return unionpay.Accepted{RespCode: "00", Outcome: unionpay.Unknown}, nil
}

func (g *igateway) DownloadFile(_ context.Context, settleDate string) ([]unionpay.ReconRecord, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []unionpay.ReconRecord
	for id, amt := range g.charged {
		out = append(out, unionpay.ReconRecord{TxnType: "01", OrderID: id, QueryID: "Q" + id[2:12], Amount: amt, SettleDate: settleDate, RespCode: "00"})
	}
	return out, nil
}

func (g *igateway) charge(orderID string, amt money.Fen) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.charged[orderID] = amt
}

// iplatform is the platform: bills B1 and B2 of C1, postings idempotent
// by reference, and a switch to refuse them (bill settled elsewhere).
type iplatform struct {
	mu       sync.Mutex
	postings map[string]platform.Payment
	posts    int
	refuse   bool
}

func (p *iplatform) Customer(_ context.Context, id string) (platform.Customer, error) {
	return platform.Customer{ID: id, Name: "Beijing Steel"}, nil
}

func (p *iplatform) Bill(_ context.Context, customerID, billID string) (platform.Bill, error) {
	due := map[string]money.Fen{"B1": 1000, "B2": 2000}[billID]
	if customerID != "C1" || due == 0 {
		return platform.Bill{}, platform.ErrBillNotFound
	}
	return platform.Bill{ID: billID, CustomerID: customerID, AmountDue: due, Status: platform.BillOpen}, nil
}

func (p *iplatform) PostPayment(_ context.Context, pp platform.PostPayment) (platform.Payment, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.posts++
	if prev, ok := p.postings[pp.Reference]; ok {
		return prev, nil
	}
	if p.refuse {
		return platform.Payment{}, &platform.Error{Code: platform.CodeAlreadySettled, Message: "bill B1 was settled at a counter"}
	}
	pay := platform.Payment{Reference: pp.Reference, CustomerID: pp.CustomerID, Amount: pp.Amount, Allocations: pp.Allocations, Prepaid: pp.Prepaid,
		PaidAt: pp.PaidAt, PostedAt: time.Now().UTC().Truncate(time.Microsecond), Status: platform.PaymentPosted}
	p.postings[pp.Reference] = pay
	return pay, nil
}

func (p *iplatform) Payment(_ context.Context, ref string) (platform.Payment, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pay, ok := p.postings[ref]; ok {
		return pay, nil
	}
	return platform.Payment{}, platform.ErrNotFound
}

type stack struct {
	ctx  context.Context
	db   *store.DB
	tc   client.Client
	gw   *igateway
	plat *iplatform
	key  *ecdsa.PrivateKey
	tq   string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	db, err := store.Open(ctx, testenv.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// The customer's USB key: its certificate, recorded and bound.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0xab01), Subject: pkix.Name{CommonName: "C1"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.InsertCertificate(ctx, db, &store.Certificate{Serial: "ab01", Issuer: "test-ca", Subject: "CN=C1", CustomerID: "C1", TokenSerial: "T1",
		Kind: store.KindCustomer, NotBefore: tmpl.NotBefore, NotAfter: tmpl.NotAfter, DER: der}); err != nil {
		t.Fatal(err)
	}
	b, err := store.CreateBinding(ctx, db, "T1", "C1", "ab01", "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.ActivateBinding(ctx, db, b.ID, time.Now()); err != nil {
		t.Fatal(err)
	}

	srv, err := testenv.StartTemporal(ctx, testenv.TemporalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	tc := srv.Client()
	if _, err := app.RegisterSearchAttributes(ctx, tc, "default", SearchAttributes()); err != nil {
		t.Fatal(err)
	}
	s := &stack{ctx: ctx, db: db, tc: tc, key: key, tq: "payments-test",
		gw:   &igateway{charged: map[string]money.Fen{}, refunds: map[string]unionpay.RefundRequest{}},
		plat: &iplatform{postings: map[string]platform.Payment{}}}
	w := worker.New(tc, s.tq, worker.Options{})
	w.RegisterWorkflow(Pay)
	w.RegisterWorkflow(RecoverPayment)
	w.RegisterWorkflow(Reconcile)
	w.RegisterActivity(&activities.Payments{Records: store.Payments{DB: db}, Gateway: s.gw, Platform: s.plat,
		FrontURL: "https://gridpay.test/paid", BackURL: "https://gridpay.test/notify"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return s
}

// input signs an instruction with the USB key, as the client does.
func (s *stack) input(t *testing.T, key string) PaymentInput {
	t.Helper()
	p := protocol.PaymentInstruction{Version: 1, IdempotencyKey: key, CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", Kind: protocol.PayBills,
		BillIDs: []string{"B1", "B2"}, Amount: 3000, Currency: "CNY", Nonce: protocol.NewNonce(16), Timestamp: time.Now().UTC().Truncate(time.Second)}
	enc, err := protocol.EncodePaymentInstruction(p)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.key.Sign(rand.Reader, protocol.PaymentInstructionDigest(enc), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return PaymentInput{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", IdempotencyKey: key, Kind: "bills", BillIDs: p.BillIDs,
		Amount: p.Amount, Instruction: enc, Signature: sig}
}

// pay is the gateway's update-with-start.
func (s *stack) pay(in PaymentInput) (Order, error) {
	start := s.tc.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID: PaymentID(in.CustomerID, in.IdempotencyKey), TaskQueue: s.tq,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, Pay, in)
	h, err := s.tc.UpdateWithStartWorkflow(s.ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions:          client.UpdateWorkflowOptions{UpdateName: UpdateOrder, Args: []any{in.OrderRequest()}, WaitForStage: client.WorkflowUpdateStageCompleted},
	})
	var o Order
	if err == nil {
		err = h.Get(s.ctx, &o)
	}
	return o, err
}

func (s *stack) result(t *testing.T, id string) (PaymentState, string) {
	t.Helper()
	run := s.tc.GetWorkflow(s.ctx, id, "")
	var st PaymentState
	if err := run.Get(s.ctx, &st); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return st, run.GetRunID()
}

func (s *stack) assertInvariants(t *testing.T) {
	t.Helper()
	v, err := store.CheckPaymentInvariants(s.ctx, s.db)
	if err != nil || len(v) != 0 {
		t.Fatalf("money invariant: %v %v", v, err)
	}
	if _, err := s.db.VerifyAudit(s.ctx); err != nil {
		t.Fatal(err)
	}
}

// The same key sent 10 times at once: one workflow, one order, the same
// answer each time; paid by notification, posted once.
func TestPaymentSameKeyConcurrentlyThenPosted(t *testing.T) {
	s := newStack(t)
	in := s.input(t, "concurrent-key-0001")
	var wg sync.WaitGroup
	orders := make([]Order, 10)
	errs := make([]error, 10)
	for i := range orders {
		wg.Add(1)
		go func() { defer wg.Done(); orders[i], errs[i] = s.pay(in) }()
	}
	wg.Wait()
	for i := range orders {
		if errs[i] != nil || orders[i].OrderID != orders[0].OrderID || orders[i].Form.Fields["orderId"] != orders[0].OrderID {
			t.Fatalf("request %d: %+v %v", i, orders[i], errs[i])
		}
	}
	var n int
	s.db.QueryRow(s.ctx, `SELECT count(*) FROM payments`).Scan(&n)
	if n != 1 || orders[0].OrderID != activities.OrderIDFor(PaymentID("C1", in.IdempotencyKey)) {
		t.Fatalf("%d payments, order %s", n, orders[0].OrderID)
	}
	// The payer pays; the gateway signals the verified notification (twice).
	s.gw.charge(orders[0].OrderID, 3000)
	note := unionpay.Notification{TxnType: "01", OrderID: orders[0].OrderID, QueryID: "Q" + orders[0].OrderID[2:12], RespCode: "00", Amount: 3000,
		SettleDate: "0301", Outcome: unionpay.Succeeded}
	for range 2 {
		if err := s.tc.SignalWorkflow(s.ctx, orders[0].WorkflowID, "", SignalNotification, note); err != nil {
			t.Fatal(err)
		}
	}
	st, runID := s.result(t, orders[0].WorkflowID)
	if st.Status != "posted" || st.Receipt == nil || s.plat.posts != 1 {
		t.Fatalf("state %+v, %d postings", st, s.plat.posts)
	}
	// Once closed, the key's answer is the status query.
	if _, err := s.pay(in); err == nil {
		t.Fatal("a closed payment was started again")
	}
	v, err := s.tc.QueryWorkflow(s.ctx, orders[0].WorkflowID, "", QueryStatus)
	var again PaymentState
	if err != nil || v.Get(&again) != nil || again.Status != "posted" {
		t.Fatalf("status of the closed payment: %+v %v", again, err)
	}
	s.assertInvariants(t)
	if err := testenv.RecordHistory(s.ctx, s.tc, orders[0].WorkflowID, runID, "pay"); err != nil {
		t.Fatal(err)
	}
}

// The platform refuses the payment: refunded once, and a replay of the
// signed instruction under another key is refused.
func TestPaymentRefundedWhenThePlatformRefuses(t *testing.T) {
	s := newStack(t)
	s.plat.refuse = true
	in := s.input(t, "refused-key-000001")
	in.Timing = PaymentTiming{QueryFirst: 500 * time.Millisecond}
	o, err := s.pay(in)
	if err != nil {
		t.Fatal(err)
	}
	s.gw.charge(o.OrderID, 3000)
	if err := s.tc.SignalWorkflow(s.ctx, o.WorkflowID, "", SignalNotification, unionpay.Notification{TxnType: "01", OrderID: o.OrderID,
		QueryID: "Q" + o.OrderID[2:12], RespCode: "00", Amount: 3000, Outcome: unionpay.Succeeded}); err != nil {
		t.Fatal(err)
	}
	st, runID := s.result(t, o.WorkflowID)
	if st.Status != "refunded" || len(s.gw.refunds) != 1 || st.Reason == "" {
		t.Fatalf("state %+v, refunds %d", st, len(s.gw.refunds))
	}
	s.assertInvariants(t)
	if err := testenv.RecordHistory(s.ctx, s.tc, o.WorkflowID, runID, "pay_refund"); err != nil {
		t.Fatal(err)
	}

	// The same signed bytes sent under another workflow: the nonce is
	// spent.
	replay := in
	replay.IdempotencyKey = "replayed-key-00001"
	_, err = s.pay(replay)
	if err == nil {
		t.Fatal("a replayed instruction was accepted")
	}
	rst, _ := s.result(t, PaymentID("C1", replay.IdempotencyKey))
	if rst.Status != "rejected" || rst.ErrorType != activities.ErrTypeBadInstruction {
		// The key differs from the signed one, so it is refused before
		// the nonce is even looked at.
		t.Fatalf("replay: %+v", rst)
	}
	sum := sha256.Sum256(in.Instruction)
	var refusals int
	s.db.QueryRow(s.ctx, `SELECT count(*) FROM audit_log WHERE action = 'payment.instruction' AND outcome = 'refused' AND detail->>'instruction_sha256' = $1`,
		fmt.Sprintf("%x", sum)).Scan(&refusals)
	if refusals != 1 {
		t.Fatalf("%d refusals audited", refusals)
	}
}

// An order that expires, then shows up paid in the reconciliation file:
// reconciliation starts a recovery that posts it.
func TestPaymentExpiredThenRecoveredByReconciliation(t *testing.T) {
	s := newStack(t)
	in := s.input(t, "expired-key-000001")
	in.Timing = PaymentTiming{PayTimeout: 2 * time.Second, Grace: time.Second, QueryFirst: 500 * time.Millisecond, QueryMax: time.Second}
	o, err := s.pay(in)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.result(t, o.WorkflowID)
	if st.Status != "expired" {
		t.Fatalf("state %+v", st)
	}
	// UnionPay charged it after all (the file says so).
	s.gw.charge(o.OrderID, 3000)
	run, err := s.tc.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: ReconcileID("2026-03-01"), TaskQueue: s.tq}, Reconcile,
		ReconcileInput{SettleDate: "2026-03-01"})
	if err != nil {
		t.Fatal(err)
	}
	var res ReconcileResult
	if err := run.Get(s.ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Records != 1 || res.Issues != 1 || res.RecoveriesStarted != 1 || res.ByKind[store.IssuePaidNotPosted] != 1 {
		t.Fatalf("reconciliation %+v", res)
	}
	rec, recRunID := s.result(t, RecoveryID(o.OrderID))
	if rec.Status != "posted" || s.plat.posts != 1 {
		t.Fatalf("recovery %+v, %d postings", rec, s.plat.posts)
	}
	issues, err := store.ReconIssues(s.ctx, s.db, res.RunID)
	if err != nil || len(issues) != 1 || issues[0].Action != store.ReconRecover {
		t.Fatalf("issues %+v %v", issues, err)
	}
	s.assertInvariants(t)
	for name, ids := range map[string][2]string{"reconcile": {run.GetID(), run.GetRunID()}, "recover_payment": {RecoveryID(o.OrderID), recRunID}} {
		if err := testenv.RecordHistory(s.ctx, s.tc, ids[0], ids[1], name); err != nil {
			t.Fatal(err)
		}
	}
	// Reconciling again finds it matched.
	run2, err := s.tc.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: ReconcileID("2026-03-01") + "-again", TaskQueue: s.tq}, Reconcile,
		ReconcileInput{SettleDate: "2026-03-01"})
	if err != nil {
		t.Fatal(err)
	}
	if err := run2.Get(s.ctx, &res); err != nil || res.Matched != 1 || res.Issues != 0 {
		t.Fatalf("second reconciliation %+v %v", res, err)
	}
}
