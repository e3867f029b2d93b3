package activities

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
)

// fakeLoadRecords adds loads to fakeRecords, with the store's transitions.
type fakeLoadRecords struct {
	*fakeRecords
	loads map[string]*store.Load // by workflow ID
}

var loadNext = map[store.LoadStatus][]store.LoadStatus{
	store.LoadVerified: {store.LoadDebited, store.LoadRejected},
	store.LoadDebited:  {store.LoadAllowed, store.LoadRefunded},
	store.LoadAllowed:  {store.LoadConfirmed, store.LoadRefunded},
}

func (f *fakeLoadRecords) CreateLoad(_ context.Context, nl store.NewLoad, actor string) (store.Load, error) {
	defer f.call("CreateLoad")()
	if l, ok := f.loads[nl.WorkflowID]; ok {
		return *l, nil
	}
	for _, l := range f.loads {
		if l.TokenSerial == nl.TokenSerial && l.Status.Open() {
			return store.Load{}, &store.PendingLoadError{Load: *l}
		}
		if l.TokenSerial == nl.TokenSerial && l.Sequence == nl.Sequence {
			return store.Load{}, store.ErrSequenceUsed
		}
	}
	l := &store.Load{ID: int64(len(f.loads) + 1), LoadID: nl.LoadID, WorkflowID: nl.WorkflowID, CustomerID: nl.CustomerID, TokenSerial: nl.TokenSerial,
		CertSerial: nl.CertSerial, Sequence: nl.Sequence, WalletSequence: nl.WalletSequence, WalletBalance: nl.WalletBalance, Amount: nl.Amount,
		RequestSHA256: nl.RequestSHA256, Status: store.LoadVerified, CreatedAt: now}
	f.loads[nl.WorkflowID] = l
	f.audits = append(f.audits, store.AuditRecord{Action: "load.verified", Subject: nl.WorkflowID, Outcome: store.OutcomeOK})
	return *l, nil
}

func (f *fakeLoadRecords) move(wfID string, to store.LoadStatus, edit func(l *store.Load)) (store.Load, error) {
	defer f.call("Mark" + string(to))()
	l, ok := f.loads[wfID]
	if !ok {
		return store.Load{}, store.ErrNotFound
	}
	if l.Status == to {
		return *l, nil
	}
	if !slices.Contains(loadNext[l.Status], to) {
		return store.Load{}, fmt.Errorf("%w: %s → %s", store.ErrIllegalTransition, l.Status, to)
	}
	l.Status = to
	edit(l)
	f.audits = append(f.audits, store.AuditRecord{Action: "load." + string(to), Subject: wfID, Outcome: store.OutcomeOK})
	return *l, nil
}

func (f *fakeLoadRecords) MarkDebited(_ context.Context, wfID, key string, at time.Time, _ string) (store.Load, error) {
	return f.move(wfID, store.LoadDebited, func(l *store.Load) { l.DebitKey, l.DebitedAt = key, &at })
}

func (f *fakeLoadRecords) MarkRejected(_ context.Context, wfID, reason, _ string) (store.Load, error) {
	return f.move(wfID, store.LoadRejected, func(l *store.Load) { l.Reason = reason })
}

func (f *fakeLoadRecords) MarkAllowed(_ context.Context, wfID string, a store.LoadAllowRecord, _ string) (store.Load, error) {
	if l, ok := f.loads[wfID]; ok && l.Status == store.LoadAllowed && string(l.StateSHA256) != string(a.SHA256) {
		return store.Load{}, store.ErrConflict
	}
	return f.move(wfID, store.LoadAllowed, func(l *store.Load) {
		l.StateSHA256, l.AllowedAt, l.AllowExpiresAt, l.NewBalance = a.SHA256, &a.At, &a.ExpiresAt, &a.NewBalance
	})
}

func (f *fakeLoadRecords) MarkConfirmed(_ context.Context, wfID, by string, sha []byte, at time.Time, _ string) (store.Load, error) {
	return f.move(wfID, store.LoadConfirmed, func(l *store.Load) { l.ConfirmedBy, l.ReportSHA256, l.ConfirmedAt = by, sha, &at })
}

func (f *fakeLoadRecords) MarkRefunded(_ context.Context, wfID, key, reason string, at time.Time, _ string) (store.Load, error) {
	return f.move(wfID, store.LoadRefunded, func(l *store.Load) { l.RefundKey, l.Reason, l.RefundedAt = key, reason, &at })
}

func (f *fakeLoadRecords) LoadByWorkflowID(_ context.Context, wfID string) (store.Load, error) {
	if l, ok := f.loads[wfID]; ok {
		return *l, nil
	}
	return store.Load{}, store.ErrNotFound
}

func (f *fakeLoadRecords) OpenLoads(_ context.Context, token string) ([]store.Load, error) {
	var out []store.Load
	for _, l := range f.loads {
		if l.TokenSerial == token && l.Status.Open() {
			out = append(out, *l)
		}
	}
	return out, nil
}

func (f *fakeLoadRecords) LastConfirmedLoad(_ context.Context, token string) (store.Load, error) {
	var best *store.Load
	for _, l := range f.loads {
		if l.TokenSerial == token && l.Status == store.LoadConfirmed && (best == nil || l.Sequence > best.Sequence) {
			best = l
		}
	}
	if best == nil {
		return store.Load{}, store.ErrNotFound
	}
	return *best, nil
}

func (f *fakeLoadRecords) MaxLoadSequence(_ context.Context, token string) (uint64, error) {
	var n uint64
	for _, l := range f.loads {
		if l.TokenSerial == token {
			n = max(n, l.Sequence)
		}
	}
	return n, nil
}

// fakePrepaid is the platform's prepaid accounts, idempotent by key like
// the real one.
type fakePrepaid struct {
	mu        sync.Mutex
	customers map[string]platform.Customer
	balance   map[string]money.Fen
	entries   map[string]platform.PrepaidEntry
	down      bool
}

func (p *fakePrepaid) Customer(_ context.Context, id string) (platform.Customer, error) {
	if p.down {
		return platform.Customer{}, &platform.Error{Code: platform.CodeUnavailable, Message: "down"}
	}
	c, ok := p.customers[id]
	if !ok {
		return platform.Customer{}, &platform.Error{Code: platform.CodeUnknownCustomer, Message: "no " + id}
	}
	return c, nil
}

func (p *fakePrepaid) entry(customerID, key string, amount money.Fen) (platform.PrepaidEntry, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return platform.PrepaidEntry{}, &platform.Error{Code: platform.CodeUnavailable, Message: "down"}
	}
	if e, ok := p.entries[key]; ok {
		if e.Amount != amount {
			return platform.PrepaidEntry{}, &platform.Error{Code: platform.CodeConflict, Message: "key reused"}
		}
		return e, nil
	}
	if p.balance[customerID]+amount < 0 {
		return platform.PrepaidEntry{}, &platform.Error{Code: platform.CodeInsufficientFunds, Message: "too little"}
	}
	p.balance[customerID] += amount
	e := platform.PrepaidEntry{Key: key, CustomerID: customerID, Amount: amount, BalanceAfter: p.balance[customerID], At: now}
	p.entries[key] = e
	return e, nil
}

func (p *fakePrepaid) DebitPrepaid(_ context.Context, customerID, key string, amount money.Fen, _ string) (platform.PrepaidEntry, error) {
	return p.entry(customerID, key, -amount)
}

func (p *fakePrepaid) CreditPrepaid(_ context.Context, customerID, key string, amount money.Fen, _ string) (platform.PrepaidEntry, error) {
	return p.entry(customerID, key, amount)
}

// testLoadSigner is GridPay's load signer with in-memory keys: a services
// CA of a root, and a service certificate for "load".
type testLoadSigner struct {
	root   *x509.Certificate
	keys   *memKeys
	signer *ServiceKey
}

// memKeys is authority.HSMKeys with in-memory keys.
type memKeys struct {
	signers map[string]crypto.Signer
	certs   map[string]*x509.Certificate
}

func (m *memKeys) Signer(_ context.Context, label string) (crypto.Signer, error) {
	if s, ok := m.signers[label]; ok {
		return s, nil
	}
	return nil, errors.New("no key " + label)
}

func (m *memKeys) Certificate(_ context.Context, label string) (*x509.Certificate, error) {
	if c, ok := m.certs[label]; ok {
		return c, nil
	}
	return nil, errors.New("no certificate " + label)
}

func newTestLoadSigner(t *testing.T, service string) *testLoadSigner {
	t.Helper()
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rc, err := pki.NewRoot(rk, pki.RootOptions{CommonName: "Test Root CA", Organization: "GridPay Test", Country: "CN", Now: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	root, err := pki.NewCA(rc, rk)
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sc, err := pki.NewIssuing(root, sk.Public(), pki.IssuingOptions{CommonName: "Test Services CA", Role: pki.RoleServices, Now: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	services, err := pki.NewCA(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	lk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lc, err := services.IssueService(lk.Public(), pki.ServiceRequest{Name: service, Now: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	keys := &memKeys{signers: map[string]crypto.Signer{"gridpay-load-signer": lk}, certs: map[string]*x509.Certificate{"gridpay-load-signer": lc}}
	return &testLoadSigner{root: rc, keys: keys,
		signer: &ServiceKey{Keys: keys, Label: "gridpay-load-signer", Intermediates: []*x509.Certificate{sc}}}
}

type loadFixture struct {
	a      *Loads
	rec    *fakeLoadRecords
	plat   *fakePrepaid
	signer *testLoadSigner
	key    *ecdsa.PrivateKey
	env    *testsuite.TestActivityEnvironment
}

func newLoadFixture(t *testing.T) *loadFixture {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0xab01), Subject: pkix.Name{CommonName: "C1"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	f := &loadFixture{rec: &fakeLoadRecords{fakeRecords: newFakeRecords(), loads: map[string]*store.Load{}}, key: key,
		plat: &fakePrepaid{customers: map[string]platform.Customer{"C1": {ID: "C1", AccountNumber: "9100000012345"}},
			balance: map[string]money.Fen{"C1": 1_000_00}, entries: map[string]platform.PrepaidEntry{}},
		signer: newTestLoadSigner(t, LoadSignerService)}
	f.rec.certs["ab01"] = store.Certificate{Serial: "ab01", CustomerID: "C1", TokenSerial: "T1", DER: der}
	f.rec.bound["ab01"] = true
	f.a = &Loads{Records: f.rec, Platform: f.plat, Signer: f.signer.signer, Now: func() time.Time { return now }}
	var s testsuite.WorkflowTestSuite
	f.env = s.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.a)
	return f
}

// request signs a load request of the key (sequence 1 onto an empty
// wallet unless edited).
func (f *loadFixture) request(t *testing.T, edit func(*protocol.LoadRequest)) LoadCheck {
	t.Helper()
	r := protocol.LoadRequest{
		LoadHeader: protocol.LoadHeader{Version: 1, Type: protocol.TypeLoadRequest, TokenSerial: "T1", CertSerial: "ab01", KeyVersion: 1,
			Algorithm: protocol.AlgECDSAP256SHA256, Nonce: protocol.NewNonce(16), Timestamp: now.Add(-10 * time.Second), Sequence: 1},
		CustomerID: "C1", Account: "9100000012345", Amount: 500_00, Currency: "CNY",
	}
	if edit != nil {
		edit(&r)
	}
	enc, err := protocol.EncodeLoadRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := protocol.Sign(f.key, r.Algorithm, protocol.LoadRequestDigest(enc))
	if err != nil {
		t.Fatal(err)
	}
	return LoadCheck{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", Sequence: r.Sequence, Request: enc, Signature: sig}
}

func (f *loadFixture) report(t *testing.T, r protocol.LoadReport) ReportCheck {
	t.Helper()
	r.LoadHeader = protocol.LoadHeader{Version: 1, Type: protocol.TypeLoadReport, TokenSerial: "T1", CertSerial: "ab01", KeyVersion: 1,
		Algorithm: protocol.AlgECDSAP256SHA256, Nonce: protocol.NewNonce(16), Timestamp: now, Sequence: r.Sequence}
	enc, err := protocol.EncodeLoadReport(r)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := protocol.Sign(f.key, r.Algorithm, protocol.LoadReportDigest(enc))
	if err != nil {
		t.Fatal(err)
	}
	return ReportCheck{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", Report: enc, Signature: sig}
}

func (f *loadFixture) accept(t *testing.T, req LoadCheck) (AcceptedLoad, error) {
	t.Helper()
	v, err := f.env.ExecuteActivity(f.a.AcceptLoad, req)
	if err != nil {
		return AcceptedLoad{}, err
	}
	var got AcceptedLoad
	return got, v.Get(&got)
}

func TestAcceptLoad(t *testing.T) {
	f := newLoadFixture(t)
	req := f.request(t, nil)
	got, err := f.accept(t, req)
	if err != nil {
		t.Fatal(err)
	}
	if got.LoadID != "load-T1-1" || got.Sequence != 1 || got.Amount != 500_00 || len(got.RequestSHA256) != 32 {
		t.Fatalf("accepted %+v", got)
	}
	l := f.rec.loads[testWorkflowID]
	if l == nil || l.Status != store.LoadVerified || l.Amount != 500_00 {
		t.Fatalf("record %+v", l)
	}
	actions := []string{}
	for _, a := range f.rec.audits {
		actions = append(actions, a.Action+":"+string(a.Outcome))
	}
	if strings.Join(actions, ",") != "load.request:ok,load.verified:ok" {
		t.Fatalf("audits %v", actions)
	}
	// A retried activity finds its record.
	if again, err := f.accept(t, req); err != nil || again.LoadID != got.LoadID {
		t.Fatalf("retry: %+v %v", again, err)
	}
	// Another request for the same workflow (sequence) is refused.
	_, err = f.accept(t, f.request(t, nil))
	refusedAs(t, err, ErrTypeLoadReplay, "taken by another request")
}

func TestAcceptLoadRefusals(t *testing.T) {
	confirmed := func(f *loadFixture, seq uint64, balance int64) {
		nb := balance
		f.rec.loads[fmt.Sprintf("load/T1/%d", seq)] = &store.Load{LoadID: protocol.LoadID("T1", seq), WorkflowID: fmt.Sprintf("load/T1/%d", seq),
			TokenSerial: "T1", Sequence: seq, Status: store.LoadConfirmed, NewBalance: &nb}
	}
	cases := []struct {
		name, typ, want string
		edit            func(r *protocol.LoadRequest)
		setup           func(t *testing.T, f *loadFixture, req *LoadCheck)
	}{
		{"bad signature", ErrTypeBadLoadRequest, "does not verify", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) {
			req.Request[len(req.Request)-5] ^= 1
		}},
		{"unsigned", ErrTypeBadLoadRequest, "unsigned", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) { req.Signature = nil }},
		{"unknown certificate", ErrTypeBadLoadRequest, "not issued by GridPay", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) {
			req.CertSerial = "ff"
		}},
		{"another customer's key", ErrTypeBadLoadRequest, "belongs to customer", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) {
			req.CustomerID = "C2"
		}},
		{"revoked", ErrTypeRevoked, "revoked", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) { f.rec.revoked["ab01"] = true }},
		{"not bound", ErrTypeNotBound, "no active binding", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) { f.rec.bound["ab01"] = false }},
		{"another sequence than the workflow's", ErrTypeBadLoadRequest, "for sequence 1, not 2", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) {
			req.Sequence = 2
		}},
		{"stale", ErrTypeStaleLoadRequest, "check the computer's clock", func(r *protocol.LoadRequest) { r.Timestamp = now.Add(-time.Hour) }, nil},
		{"too small", ErrTypeLoadAmount, "between ¥1.00", func(r *protocol.LoadRequest) { r.Amount = 99 }, nil},
		{"too large", ErrTypeLoadAmount, "¥1,000,000.00", func(r *protocol.LoadRequest) { r.Amount = DefaultLoadMax + 1 }, nil},
		{"another account", ErrTypeAccountMismatch, "not the customer's", func(r *protocol.LoadRequest) { r.Account = "9100000099999" }, nil},
		{"customer unknown to the platform", ErrTypeUnknownCustomer, "does not know", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) {
			delete(f.plat.customers, "C1")
		}},
		{"old sequence", ErrTypeLoadReplay, "used before", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) { confirmed(f, 3, 0) }},
		{"load in flight", ErrTypeLoadPending, "still being settled", func(r *protocol.LoadRequest) { r.Sequence = 5 },
			func(t *testing.T, f *loadFixture, req *LoadCheck) {
				exp := now.Add(time.Minute)
				f.rec.loads["load/T1/4"] = &store.Load{LoadID: "load-T1-4", WorkflowID: "load/T1/4", TokenSerial: "T1", Sequence: 4,
					Amount: 100, Status: store.LoadAllowed, AllowExpiresAt: &exp}
			}},
		{"money on a wallet never loaded", ErrTypeWalletMismatch, "never loaded", func(r *protocol.LoadRequest) { r.WalletBalance = 100 }, nil},
		{"wallet behind GridPay's records", ErrTypeWalletMismatch, "last load onto it is 2", func(r *protocol.LoadRequest) {
			r.Sequence, r.WalletSequence, r.WalletLastLoad, r.WalletBalance = 3, 1, protocol.LoadID("T1", 1), 100
		}, func(t *testing.T, f *loadFixture, req *LoadCheck) { confirmed(f, 2, 500) }},
		{"more money than GridPay signed", ErrTypeWalletMismatch, "more than the ¥5.00", func(r *protocol.LoadRequest) {
			r.Sequence, r.WalletSequence, r.WalletLastLoad, r.WalletBalance = 3, 2, protocol.LoadID("T1", 2), 501
		}, func(t *testing.T, f *loadFixture, req *LoadCheck) { confirmed(f, 2, 500) }},
		{"replayed nonce", ErrTypeLoadReplay, "replayed", nil, func(t *testing.T, f *loadFixture, req *LoadCheck) {
			r, _ := protocol.DecodeLoadRequest(req.Request)
			f.rec.nonces[fmt.Sprintf("T1/%x", r.Nonce)] = "load/T1/other"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newLoadFixture(t)
			req := f.request(t, c.edit)
			if c.setup != nil {
				c.setup(t, f, &req)
			}
			_, err := f.accept(t, req)
			refusedAs(t, err, c.typ, c.want)
			last := f.rec.audits[len(f.rec.audits)-1]
			if last.Action != "load.request" || last.Outcome != store.OutcomeRefused || last.Detail["error_type"] != c.typ {
				t.Fatalf("refusal audit %+v", last)
			}
			if l := f.rec.loads[testWorkflowID]; l != nil {
				t.Fatalf("a refused request was recorded: %+v", l)
			}
		})
	}
	// The platform being down is retried, not refused.
	f := newLoadFixture(t)
	f.plat.down = true
	_, err := f.accept(t, f.request(t, nil))
	var app *temporal.ApplicationError
	if err == nil || errors.As(err, &app) && app.NonRetryable() {
		t.Fatalf("platform down: %v", err)
	}
}

// acceptedLoad puts a verified load of the test workflow on the records.
func (f *loadFixture) acceptedLoad(t *testing.T) {
	t.Helper()
	if _, err := f.accept(t, f.request(t, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestDebitAccount(t *testing.T) {
	// Rejecting a load refused before it was recorded records nothing.
	e := newLoadFixture(t)
	if _, err := e.env.ExecuteActivity(e.a.RejectLoad, "refused"); err != nil || len(e.rec.loads) != 0 {
		t.Fatalf("reject without a record: %v, %d loads", err, len(e.rec.loads))
	}

	f := newLoadFixture(t)
	f.acceptedLoad(t)
	for range 2 { // a retried activity debits once
		if _, err := f.env.ExecuteActivity(f.a.DebitAccount); err != nil {
			t.Fatal(err)
		}
	}
	l := f.rec.loads[testWorkflowID]
	if l.Status != store.LoadDebited || l.DebitKey != "load-T1-1" || f.plat.balance["C1"] != 500_00 || len(f.plat.entries) != 1 {
		t.Fatalf("debit: %+v, balance %d, %d entries", l, f.plat.balance["C1"], len(f.plat.entries))
	}

	// Not enough on the account: refused, nothing moved.
	g := newLoadFixture(t)
	g.plat.balance["C1"] = 100
	g.acceptedLoad(t)
	_, err := g.env.ExecuteActivity(g.a.DebitAccount)
	refusedAs(t, err, ErrTypeDebitRefused, "holds less than ¥500.00")
	if g.plat.balance["C1"] != 100 || g.rec.loads[testWorkflowID].Status != store.LoadVerified {
		t.Fatal("a refused debit moved money")
	}
	// The platform down: retried.
	g.plat.down = true
	_, err = g.env.ExecuteActivity(g.a.DebitAccount)
	var app *temporal.ApplicationError
	if err == nil || errors.As(err, &app) && app.NonRetryable() {
		t.Fatalf("platform down: %v", err)
	}
	g.plat.down = false
	if _, err := g.env.ExecuteActivity(g.a.RejectLoad, "insufficient funds"); err != nil {
		t.Fatal(err)
	}
	_, err = g.env.ExecuteActivity(g.a.DebitAccount)
	refusedAs(t, err, ErrTypeIllegalTransition, "rejected")
}

func (f *loadFixture) signAllow(t *testing.T) SignedAllow {
	t.Helper()
	v, err := f.env.ExecuteActivity(f.a.SignAllow, AllowSpec{HostTime: now, Expires: now.Add(2 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var s SignedAllow
	if err := v.Get(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSignAllow(t *testing.T) {
	f := newLoadFixture(t)
	f.acceptedLoad(t)
	_, err := f.env.ExecuteActivity(f.a.SignAllow, AllowSpec{HostTime: now, Expires: now.Add(time.Minute)})
	refusedAs(t, err, ErrTypeIllegalTransition, "only a debited load")
	f.env.ExecuteActivity(f.a.DebitAccount)
	s := f.signAllow(t)
	if len(s.Chain) != 2 {
		t.Fatalf("chain of %d certificates", len(s.Chain))
	}
	leaf, err := x509.ParseCertificate(s.Chain[0])
	if err != nil {
		t.Fatal(err)
	}
	a, st, err := protocol.VerifyLoadAllow(leaf, s.Allow, s.Signature)
	if err != nil {
		t.Fatal(err)
	}
	if a.Amount != 500_00 || a.Sequence != 1 || a.PrevSequence != 0 || !a.Expires.Equal(now.Add(2*time.Minute)) || !a.Timestamp.Equal(now) ||
		st.Balance != 500_00 || st.LastLoadID != "load-T1-1" || s.NewBalance != 500_00 {
		t.Fatalf("allow %+v state %+v", a, st)
	}
	sum := sha256.Sum256(s.State)
	l := f.rec.loads[testWorkflowID]
	if l.Status != store.LoadAllowed || string(l.StateSHA256) != string(sum[:]) || string(s.StateSHA256) != string(sum[:]) {
		t.Fatalf("record %+v", l)
	}
	// The chain leads to the root.
	roots := x509.NewCertPool()
	roots.AddCert(f.signer.root)
	inter := x509.NewCertPool()
	c2, _ := x509.ParseCertificate(s.Chain[1])
	inter.AddCert(c2)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	// Signing again (a retried activity) signs the same state.
	again := f.signAllow(t)
	if string(again.StateSHA256) != string(s.StateSHA256) {
		t.Fatal("a retried signing changed the state")
	}
}

func TestLoadSignerChecks(t *testing.T) {
	f := newLoadFixture(t)
	f.acceptedLoad(t)
	f.env.ExecuteActivity(f.a.DebitAccount)
	// No key in the HSM: retried (an operator issues it), not final.
	f.signer.signer.Label = "missing"
	_, err := f.env.ExecuteActivity(f.a.SignAllow, AllowSpec{HostTime: now, Expires: now.Add(time.Minute)})
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeLoadSignerUnavailable || app.NonRetryable() || !strings.Contains(app.Message(), "adminctl ca issue --name load") {
		t.Fatalf("missing signer: %v", err)
	}
	// A certificate of another service, or for another key, is refused.
	other := newTestLoadSigner(t, "gateway")
	if _, _, err := other.signer.LoadSigner(context.Background()); err == nil || !strings.Contains(err.Error(), `service "load"`) {
		t.Fatalf("another service's certificate: %v", err)
	}
	mixed := newTestLoadSigner(t, LoadSignerService)
	mixed.keys.signers["gridpay-load-signer"], _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, _, err := mixed.signer.LoadSigner(context.Background()); err == nil || !strings.Contains(err.Error(), "not for the key") {
		t.Fatalf("certificate for another key: %v", err)
	}
}

func TestVerifyReportConfirmAndRefund(t *testing.T) {
	f := newLoadFixture(t)
	f.acceptedLoad(t)
	f.env.ExecuteActivity(f.a.DebitAccount)
	s := f.signAllow(t)
	receipt := f.report(t, protocol.LoadReport{Kind: protocol.ReportReceipt, LoadSequence: 1, LoadID: "load-T1-1", WalletBalance: 500_00,
		Attempt: 1, State: s.State, LoadHeader: protocol.LoadHeader{Sequence: 1}})
	v, err := f.env.ExecuteActivity(f.a.VerifyReport, receipt)
	if err != nil {
		t.Fatal(err)
	}
	var got VerifiedReport
	v.Get(&got)
	if got.Kind != ReportReceipt || got.LoadSequence != 1 || got.WalletSequence != 1 || string(got.StateSHA256) != string(s.StateSHA256) ||
		got.WalletLastLoad != "load-T1-1" || got.Revoked || !got.At.Equal(now) {
		t.Fatalf("verified %+v", got)
	}
	// The same report to the same load again is fine; to another load, a
	// replay.
	if _, err := f.env.ExecuteActivity(f.a.VerifyReport, receipt); err != nil {
		t.Fatalf("again: %v", err)
	}
	for k := range f.rec.nonces {
		f.rec.nonces[k] = "load/T1/9"
	}
	_, err = f.env.ExecuteActivity(f.a.VerifyReport, receipt)
	refusedAs(t, err, ErrTypeLoadReplay, "replayed")
	tampered := receipt
	tampered.Report = slices.Clone(receipt.Report)
	tampered.Report[len(tampered.Report)-3] ^= 1
	_, err = f.env.ExecuteActivity(f.a.VerifyReport, tampered)
	refusedAs(t, err, ErrTypeBadLoadReport, "")
	// A revoked key's report is verified but marked.
	f.rec.revoked["ab01"] = true
	state := f.report(t, protocol.LoadReport{Kind: protocol.ReportState, WalletBalance: 500_00, Attempt: 1, State: s.State,
		LoadHeader: protocol.LoadHeader{Sequence: 1}})
	v, err = f.env.ExecuteActivity(f.a.VerifyReport, state)
	if err != nil {
		t.Fatal(err)
	}
	v.Get(&got)
	if !got.Revoked || got.Kind != ReportState {
		t.Fatalf("revoked key's report %+v", got)
	}

	if _, err := f.env.ExecuteActivity(f.a.ConfirmLoad, ConfirmRequest{By: store.ConfirmedByReceipt, ReportSHA256: got.SHA256}); err != nil {
		t.Fatal(err)
	}
	// Never refund what the wallet took.
	_, err = f.env.ExecuteActivity(f.a.RefundLoad, "no")
	refusedAs(t, err, ErrTypeIllegalTransition, "only a debited load")
	if f.plat.balance["C1"] != 500_00 {
		t.Fatalf("balance %d", f.plat.balance["C1"])
	}

	// A load not taken: refunded once, whatever is retried.
	g := newLoadFixture(t)
	g.acceptedLoad(t)
	g.env.ExecuteActivity(g.a.DebitAccount)
	g.signAllow(t)
	for range 2 {
		if _, err := g.env.ExecuteActivity(g.a.RefundLoad, "the allow expired unused"); err != nil {
			t.Fatal(err)
		}
	}
	if l := g.rec.loads[testWorkflowID]; l.Status != store.LoadRefunded || l.RefundKey != "load-T1-1:refund" || l.Reason != "the allow expired unused" {
		t.Fatalf("refund record %+v", l)
	}
	if g.plat.balance["C1"] != 1_000_00 || len(g.plat.entries) != 2 {
		t.Fatalf("balance %d after the refund, %d entries", g.plat.balance["C1"], len(g.plat.entries))
	}
	if err := func() error {
		_, err := g.env.ExecuteActivity(g.a.NoteLoadTokenUnbound, UnboundNote{CustomerID: "C1", TokenSerial: "T1", Status: "allowed", Why: "lost"})
		return err
	}(); err != nil || g.rec.audits[len(g.rec.audits)-1].Action != "load.token_unbound" {
		t.Fatalf("unbound note: %v", err)
	}
}
