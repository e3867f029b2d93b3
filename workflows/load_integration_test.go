//go:build integration

package workflows

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
)

// iprepaid is the platform's prepaid accounts in memory, idempotent by key.
type iprepaid struct {
	mu      sync.Mutex
	balance money.Fen
	entries map[string]money.Fen
}

func (p *iprepaid) Customer(_ context.Context, id string) (platform.Customer, error) {
	return platform.Customer{ID: id, AccountNumber: "9100000012345"}, nil
}

func (p *iprepaid) entry(key string, amount money.Fen) (platform.PrepaidEntry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.entries[key]; ok {
		return platform.PrepaidEntry{Key: key, Amount: a}, nil
	}
	if p.balance+amount < 0 {
		return platform.PrepaidEntry{}, &platform.Error{Code: platform.CodeInsufficientFunds, Message: "too little"}
	}
	p.balance += amount
	p.entries[key] = amount
	return platform.PrepaidEntry{Key: key, Amount: amount, BalanceAfter: p.balance, At: time.Now().UTC()}, nil
}

func (p *iprepaid) DebitPrepaid(_ context.Context, _, key string, amount money.Fen, _ string) (platform.PrepaidEntry, error) {
	return p.entry(key, -amount)
}

func (p *iprepaid) CreditPrepaid(_ context.Context, _, key string, amount money.Fen, _ string) (platform.PrepaidEntry, error) {
	return p.entry(key, amount)
}

// staticSigner is the load signer with a chain made by pki.
type staticSigner struct {
	key   crypto.Signer
	chain []*x509.Certificate
}

func (s staticSigner) LoadSigner(context.Context) (crypto.Signer, []*x509.Certificate, error) {
	return s.key, s.chain, nil
}

type loadStack struct {
	ctx    context.Context
	db     *store.DB
	tc     client.Client
	plat   *iprepaid
	key    *ecdsa.PrivateKey
	signer *x509.Certificate
	tq     string
	seq    uint64
	wallet protocol.WalletState // the key's wallet, as the test client keeps it
	loaded bool
}

func newLoadStack(t *testing.T) *loadStack {
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
	// GridPay's load signer: a services-CA certificate of service "load".
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rc, err := pki.NewRoot(rk, pki.RootOptions{CommonName: "Test Root", Organization: "GridPay Test", Country: "CN"})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := pki.NewCA(rc, rk)
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sc, err := pki.NewIssuing(root, sk.Public(), pki.IssuingOptions{CommonName: "Test Services CA", Role: pki.RoleServices})
	if err != nil {
		t.Fatal(err)
	}
	services, _ := pki.NewCA(sc, sk)
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lc, err := services.IssueService(lk.Public(), pki.ServiceRequest{Name: activities.LoadSignerService})
	if err != nil {
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
	s := &loadStack{ctx: ctx, db: db, tc: tc, key: key, signer: lc, tq: "loads-test",
		plat: &iprepaid{balance: 10_000_00, entries: map[string]money.Fen{}}}
	w := worker.New(tc, s.tq, worker.Options{})
	w.RegisterWorkflow(Load)
	w.RegisterActivity(&activities.Loads{Records: store.Loads{DB: db}, Platform: s.plat, Signer: staticSigner{key: lk, chain: []*x509.Certificate{lc, sc}}})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return s
}

func (s *loadStack) header(typ protocol.LoadMessageType, seq uint64) protocol.LoadHeader {
	return protocol.LoadHeader{Version: 1, Type: typ, TokenSerial: "T1", CertSerial: "ab01", KeyVersion: 1, Algorithm: protocol.AlgECDSAP256SHA256,
		Nonce: protocol.NewNonce(16), Timestamp: time.Now().UTC().Truncate(time.Second), Sequence: seq}
}

// input signs the next load request of the key, as the client does.
func (s *loadStack) input(t *testing.T, amount money.Fen, timing LoadTiming) LoadInput {
	t.Helper()
	s.seq++
	r := protocol.LoadRequest{LoadHeader: s.header(protocol.TypeLoadRequest, s.seq), CustomerID: "C1", Account: "9100000012345", Amount: amount, Currency: "CNY"}
	if s.loaded {
		r.WalletBalance, r.WalletSequence, r.WalletLastLoad = s.wallet.Balance, s.wallet.Sequence, s.wallet.LastLoadID
	}
	enc, err := protocol.EncodeLoadRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := protocol.Sign(s.key, protocol.AlgECDSAP256SHA256, protocol.LoadRequestDigest(enc))
	return LoadInput{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", Sequence: s.seq, Amount: amount, Request: enc, Signature: sig, Timing: timing}
}

// load is the gateway's update-with-start.
func (s *loadStack) load(in LoadInput) (AllowAnswer, error) {
	start := s.tc.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID: LoadWorkflowID(in.TokenSerial, in.Sequence), TaskQueue: s.tq,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, Load, in)
	h, err := s.tc.UpdateWithStartWorkflow(s.ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions:          client.UpdateWorkflowOptions{UpdateName: UpdateAllow, Args: []any{in.AllowRequest()}, WaitForStage: client.WorkflowUpdateStageCompleted},
	})
	var a AllowAnswer
	if err == nil {
		err = h.Get(s.ctx, &a)
	}
	return a, err
}

// verify checks the allow as the client does and returns the new state.
func (s *loadStack) verify(t *testing.T, a AllowAnswer) protocol.WalletState {
	t.Helper()
	signer, err := x509.ParseCertificate(a.Chain[0])
	if err != nil || !signer.Equal(s.signer) {
		t.Fatalf("chain: %v", err)
	}
	al, st, err := protocol.VerifyLoadAllow(signer, a.Allow, a.Signature)
	if err != nil {
		t.Fatal(err)
	}
	if al.Sequence != s.seq || !time.Now().Before(al.Expires) {
		t.Fatalf("allow %+v", al)
	}
	return st
}

// report sends a key's report to a load and returns where it stands.
func (s *loadStack) report(t *testing.T, seq uint64, r protocol.LoadReport) (LoadOutcome, error) {
	t.Helper()
	r.LoadHeader = s.header(protocol.TypeLoadReport, r.Sequence)
	enc, err := protocol.EncodeLoadReport(r)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := protocol.Sign(s.key, protocol.AlgECDSAP256SHA256, protocol.LoadReportDigest(enc))
	h, err := s.tc.UpdateWorkflow(s.ctx, client.UpdateWorkflowOptions{WorkflowID: LoadWorkflowID("T1", seq), UpdateName: UpdateReport,
		Args: []any{ReportInput{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", Report: enc, Signature: sig}}, WaitForStage: client.WorkflowUpdateStageCompleted})
	var out LoadOutcome
	if err == nil {
		err = h.Get(s.ctx, &out)
	}
	return out, err
}

// receipt applies the new state to the test's wallet and reports it.
func (s *loadStack) receipt(t *testing.T, st protocol.WalletState, stateEnc []byte) (LoadOutcome, error) {
	s.wallet, s.loaded = st, true
	return s.report(t, st.Sequence, protocol.LoadReport{LoadHeader: protocol.LoadHeader{Sequence: st.Sequence}, Kind: protocol.ReportReceipt,
		LoadSequence: st.Sequence, LoadID: st.LastLoadID, WalletBalance: st.Balance, Attempt: s.seq, State: stateEnc})
}

// stateReport reports the test's wallet as it is.
func (s *loadStack) stateReport(t *testing.T, seq uint64) (LoadOutcome, error) {
	r := protocol.LoadReport{Kind: protocol.ReportState, Attempt: s.seq}
	if s.loaded {
		enc, _ := protocol.EncodeWalletState(s.wallet)
		r.LoadHeader.Sequence, r.WalletBalance, r.State = s.wallet.Sequence, s.wallet.Balance, enc
	}
	return s.report(t, seq, r)
}

func (s *loadStack) result(t *testing.T, seq uint64) (LoadState, string) {
	t.Helper()
	run := s.tc.GetWorkflow(s.ctx, LoadWorkflowID("T1", seq), "")
	var st LoadState
	if err := run.Get(s.ctx, &st); err != nil {
		t.Fatal(err)
	}
	return st, run.GetRunID()
}

func (s *loadStack) assertInvariants(t *testing.T) {
	t.Helper()
	v, err := store.CheckLoadInvariants(s.ctx, s.db)
	if err != nil || len(v) != 0 {
		t.Fatalf("money invariant: %v %v", v, err)
	}
	tot, err := store.SumLoads(s.ctx, s.db)
	if err != nil {
		t.Fatal(err)
	}
	// Platform debit = wallet credit + refund.
	var debited, credited money.Fen
	s.plat.mu.Lock()
	for _, a := range s.plat.entries {
		if a < 0 {
			debited -= a
		} else {
			credited += a
		}
	}
	s.plat.mu.Unlock()
	if int64(debited) != tot.Debited || int64(credited) != tot.Refunded || tot.Debited != tot.Confirmed+tot.Refunded || tot.InFlight != 0 {
		t.Fatalf("platform debited %d, credited %d; GridPay %+v", debited, credited, tot)
	}
	if _, err := s.db.VerifyAudit(s.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLoadEndToEndOnTemporal(t *testing.T) {
	s := newLoadStack(t)
	timing := LoadTiming{AllowValidity: 3 * time.Second, ReceiptGrace: time.Second}

	// 1: confirmed by its receipt. The same request again gets the same
	// allow; another request for the sequence is refused.
	in := s.input(t, 500_00, timing)
	a, err := s.load(in)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.load(in)
	if err != nil || string(again.Allow) != string(a.Allow) {
		t.Fatalf("the same request again: %v", err)
	}
	other := in
	other.Request = append([]byte{}, in.Request...)
	other.Request[len(other.Request)-5] ^= 1
	var app *temporal.ApplicationError
	if _, err := s.load(other); !errors.As(err, &app) || app.Type() != activities.ErrTypeLoadReplay {
		t.Fatalf("another request for the sequence: %v", err)
	}
	st := s.verify(t, a)
	al, _ := protocol.DecodeLoadAllow(a.Allow)
	out, err := s.receipt(t, st, al.State)
	if err != nil || out.Status != "confirmed" || !out.Final {
		t.Fatalf("receipt: %+v %v", out, err)
	}
	res, runID := s.result(t, 1)
	if res.Status != "confirmed" || res.ConfirmedBy != store.ConfirmedByReceipt {
		t.Fatalf("load 1 %+v", res)
	}
	if err := testenv.RecordHistory(s.ctx, s.tc, LoadWorkflowID("T1", 1), runID, "load"); err != nil {
		t.Fatal(err)
	}
	// Once closed, the request is a replay.
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if _, err := s.load(in); !errors.As(err, &started) {
		t.Fatalf("a closed load started again: %v", err)
	}

	// 2: the key refuses the allow: refunded once it has expired.
	in = s.input(t, 200_00, timing)
	in2 := in
	a, err = s.load(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err = s.report(t, 2, protocol.LoadReport{LoadHeader: protocol.LoadHeader{Sequence: 1}, Kind: protocol.ReportError, LoadSequence: 2,
		LoadID: protocol.LoadID("T1", 2), WalletBalance: s.wallet.Balance, Attempt: 2, State: mustState(t, s.wallet),
		ErrorCode: protocol.ErrAllowSignature, ErrorText: "bad signature"})
	if err != nil || out.Status != LoadStatusCancelling {
		t.Fatalf("error report: %+v %v", out, err)
	}
	res, runID = s.result(t, 2)
	if res.Status != "refunded" || !time.Now().After(a.Expires) {
		t.Fatalf("load 2 %+v", res)
	}
	if err := testenv.RecordHistory(s.ctx, s.tc, LoadWorkflowID("T1", 2), runID, "load_refund"); err != nil {
		t.Fatal(err)
	}

	// 3: the receipt is lost; the key comes back after the expiry with
	// its sequence advanced: confirmed, no refund.
	in = s.input(t, 300_00, timing)
	a, err = s.load(in)
	if err != nil {
		t.Fatal(err)
	}
	st = s.verify(t, a)
	s.wallet, s.loaded = st, true
	time.Sleep(time.Until(a.Expires.Add(2 * time.Second)))
	if q, _ := s.tc.QueryWorkflow(s.ctx, LoadWorkflowID("T1", 3), "", QueryStatus); q != nil {
		var live LoadState
		q.Get(&live)
		if live.Status != LoadStatusAwaitingContact {
			t.Fatalf("waiting load 3 is %s", live.Status)
		}
	}
	if out, err = s.stateReport(t, 3); err != nil || out.Status != "confirmed" {
		t.Fatalf("contact: %+v %v", out, err)
	}
	res, runID = s.result(t, 3)
	if res.ConfirmedBy != store.ConfirmedByContact {
		t.Fatalf("load 3 %+v", res)
	}
	if err := testenv.RecordHistory(s.ctx, s.tc, LoadWorkflowID("T1", 3), runID, "load_contact"); err != nil {
		t.Fatal(err)
	}

	// 4: the allow never reached the wallet; the key comes back after the
	// expiry, not advanced: refunded.
	in = s.input(t, 400_00, timing)
	if a, err = s.load(in); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(a.Expires.Add(time.Second)))
	if out, err = s.stateReport(t, 4); err != nil || out.Status != "refunded" {
		t.Fatalf("contact without the load: %+v %v", out, err)
	}

	// 5: the allow goes out and the key is lost before it reports: an
	// operator settles the load once the allow has expired.
	in = s.input(t, 100_00, timing)
	if a, err = s.load(in); err != nil {
		t.Fatal(err)
	}
	if err := s.tc.SignalWorkflow(s.ctx, LoadWorkflowID("T1", 5), "", SignalTokenUnbound, "lost"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(a.Expires.Add(timing.ReceiptGrace + time.Second)))
	h, err := s.tc.UpdateWorkflow(s.ctx, client.UpdateWorkflowOptions{WorkflowID: LoadWorkflowID("T1", 5), UpdateName: UpdateOperatorSettle,
		Args:         []any{OperatorSettlement{Outcome: SettleRefund, Operator: "ops/test", Reason: "key returned broken, wallet read at load 4"}},
		WaitForStage: client.WorkflowUpdateStageCompleted})
	if err == nil {
		err = h.Get(s.ctx, &out)
	}
	if err != nil || out.Status != "refunded" || !out.Final {
		t.Fatalf("operator settlement: %+v %v", out, err)
	}
	res, runID = s.result(t, 5)
	if !res.TokenUnbound || !strings.Contains(res.Reason, "wallet read at load 4") {
		t.Fatalf("load 5 %+v", res)
	}
	if err := testenv.RecordHistory(s.ctx, s.tc, LoadWorkflowID("T1", 5), runID, "load_operator"); err != nil {
		t.Fatal(err)
	}

	// A replayed request of an old sequence is refused; nothing moves.
	if _, err := s.load(in2); !errors.As(err, &started) {
		t.Fatalf("replayed load 2: %v", err)
	}
	s.assertInvariants(t)
	if s.wallet.Balance != 800_00 || s.plat.balance != 10_000_00-800_00 {
		t.Fatalf("wallet %d, account %d", s.wallet.Balance, s.plat.balance)
	}
}

func mustState(t *testing.T, st protocol.WalletState) []byte {
	t.Helper()
	enc, err := protocol.EncodeWalletState(st)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}
