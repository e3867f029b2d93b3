package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/protocol"
)

// memObjects is a token's data objects in memory, with the semantics of
// hsm.Token's.
type memObjects struct {
	mu sync.Mutex
	m  map[string]hsm.DataObject
}

func newMemObjects() *memObjects { return &memObjects{m: map[string]hsm.DataObject{}} }

func (o *memObjects) ReadData(_ context.Context, app, label string) (hsm.DataObject, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	d, ok := o.m[app+"/"+label]
	if !ok {
		return hsm.DataObject{}, hsm.ErrObjectNotFound
	}
	d.Value = bytes.Clone(d.Value)
	return d, nil
}

func (o *memObjects) WriteData(_ context.Context, d hsm.DataObject) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.m[d.Application+"/"+d.Label]; ok {
		return hsm.ErrObjectExists
	}
	d.Value = bytes.Clone(d.Value)
	o.m[d.Application+"/"+d.Label] = d
	return nil
}

func (o *memObjects) ReplaceData(_ context.Context, app, label string, value []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	d, ok := o.m[app+"/"+label]
	if !ok {
		return hsm.ErrObjectNotFound
	}
	d.Value = bytes.Clone(value)
	o.m[app+"/"+label] = d
	return nil
}

func (o *memObjects) edit(t *testing.T, label string, f func(v []byte) []byte) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	d, ok := o.m[walletApplication+"/"+label]
	if !ok {
		t.Fatalf("no object %s", label)
	}
	d.Value = f(d.Value)
	o.m[walletApplication+"/"+label] = d
}

// memCard is a meter card in memory.
type memCard struct {
	*memObjects
	serial, label, pin string
	key                *ecdsa.PrivateKey
}

func (c *memCard) Serial() string { return c.serial }
func (c *memCard) CardSigner(context.Context) (crypto.Signer, error) {
	if c.key == nil {
		return nil, hsm.ErrKeyNotFound
	}
	return c.key, nil
}
func (c *memCard) GenerateCardKey(context.Context) (crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.key = k
	return k, err
}
func (c *memCard) Close() error { return nil }

// loadServer is the gateway's load API with a load signer of the test PKI:
// it checks the key's signatures like the real one and answers allows;
// knobs make it misbehave.
type loadServer struct {
	srv    *httptest.Server
	signer crypto.Signer
	chain  [][]byte

	mu       sync.Mutex
	requests []protocol.LoadRequest
	raw      [][]byte
	reports  []protocol.LoadReport
	// edit changes an allow before it is signed; resign signs it with
	// another key; unavailable answers 503 that many times; refuse answers
	// this error.
	edit        func(a *protocol.LoadAllow, st *protocol.WalletState)
	validity    time.Duration
	unavailable int
	refuse      *api.Error
	confirmed   *api.WalletRecord
	// pki signs the CRLs handed out; revoked are on the services CA's.
	pki     *testPKI
	revoked []*big.Int
	crlNo   int64
}

// crls is GET /v1/crls: fresh CRLs of the root and the services CA.
func (g *loadServer) crls() api.CRLList {
	g.crlNo++
	now := time.Now()
	var out api.CRLList
	for _, ca := range []*pki.CA{g.pki.root, g.pki.services} {
		req := pki.CRLRequest{Number: big.NewInt(g.crlNo), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}
		if ca == g.pki.services {
			for _, serial := range g.revoked {
				req.Revoked = append(req.Revoked, pki.Revoked{Serial: serial, RevokedAt: now.Add(-time.Minute)})
			}
		}
		der, err := ca.CRL(req)
		if err != nil {
			panic(err)
		}
		out.CRLs = append(out.CRLs, der)
	}
	return out
}

// revokeSigner puts the load signer's certificate on the services CA's CRL.
func (g *loadServer) revokeSigner() {
	g.mu.Lock()
	defer g.mu.Unlock()
	leaf, _ := x509.ParseCertificate(g.chain[0])
	g.revoked = append(g.revoked, leaf.SerialNumber)
}

func newLoadServer(t *testing.T, p *testPKI, service string) *loadServer {
	t.Helper()
	k := newECKey(t)
	c, err := p.services.IssueService(k.Public(), pki.ServiceRequest{Name: service})
	if err != nil {
		t.Fatal(err)
	}
	g := &loadServer{signer: k, chain: [][]byte{c.Raw, p.services.Cert.Raw}, validity: 2 * time.Minute, pki: p}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
	g.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.serverCert(t)}, ClientAuth: tls.RequireAnyClientCert}
	g.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	g.srv.StartTLS()
	t.Cleanup(g.srv.Close)
	return g
}

func (g *loadServer) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	peer := r.TLS.PeerCertificates[0]
	bad := func(err error) {
		writeJSON(w, 400, api.ErrorBody{Error: api.Error{Code: api.CodeInvalidRequest, Message: err.Error()}})
	}
	switch r.URL.Path {
	case api.PathMe:
		writeJSON(w, 200, testMe)
	case api.PathCRLs:
		writeJSON(w, 200, g.crls())
	case api.PathLoads:
		if r.Method == http.MethodGet {
			writeJSON(w, 200, g.list())
			return
		}
		var req api.LoadRequest
		json.NewDecoder(r.Body).Decode(&req)
		g.raw = append(g.raw, req.Request)
		if g.unavailable > 0 {
			g.unavailable--
			writeJSON(w, 503, api.ErrorBody{Error: api.Error{Code: api.CodeUnavailable, Message: "try again"}})
			return
		}
		if g.refuse != nil {
			writeJSON(w, 409, api.ErrorBody{Error: *g.refuse})
			return
		}
		lr, err := protocol.VerifyLoadRequest(peer, req.Request, req.Signature)
		if err != nil {
			bad(err)
			return
		}
		g.requests = append(g.requests, lr)
		writeJSON(w, 200, g.allow(lr))
	case api.PathLoadReports:
		var req api.LoadReport
		json.NewDecoder(r.Body).Decode(&req)
		rep, err := protocol.VerifyLoadReport(peer, req.Report, req.Signature)
		if err != nil {
			bad(err)
			return
		}
		g.reports = append(g.reports, rep)
		ans := api.LoadReportAnswer{Loads: []api.LoadStatus{}, Confirmed: g.confirmed}
		switch rep.Kind {
		case protocol.ReportReceipt:
			ans.Loads = append(ans.Loads, api.LoadStatus{LoadID: rep.LoadID, Sequence: rep.LoadSequence, Status: "confirmed", Final: true})
		case protocol.ReportError:
			ans.Loads = append(ans.Loads, api.LoadStatus{LoadID: rep.LoadID, Sequence: rep.LoadSequence, Status: "cancelling"})
		}
		writeJSON(w, 200, ans)
	default:
		writeJSON(w, 404, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: "no such path"}})
	}
}

// list is GET /v1/loads: the requests seen, settled by the reports seen
// (a receipt confirms, an error report refunds), newest first.
func (g *loadServer) list() api.LoadList {
	out := api.LoadList{Items: []api.LoadRecord{}}
	for i := len(g.requests) - 1; i >= 0; i-- {
		lr := g.requests[i]
		rec := api.LoadRecord{LoadID: protocol.LoadID(lr.TokenSerial, lr.Sequence), TokenSerial: lr.TokenSerial, Sequence: lr.Sequence,
			Amount: lr.Amount, Status: "allowed", Created: lr.Timestamp}
		for _, rep := range g.reports {
			switch {
			case rep.LoadSequence != lr.Sequence:
			case rep.Kind == protocol.ReportReceipt:
				rec.Status, rec.ConfirmedBy = "confirmed", "receipt"
			case rep.Kind == protocol.ReportError:
				rec.Status, rec.Reason = "refunded", "the USB key refused the load: "+rep.ErrorText
			}
		}
		out.Items = append(out.Items, rec)
	}
	return out
}

func (g *loadServer) allow(lr protocol.LoadRequest) api.LoadAllow {
	now := time.Now().UTC().Truncate(time.Second)
	leaf, _ := x509.ParseCertificate(g.chain[0])
	st := protocol.WalletState{Version: 1, TokenSerial: lr.TokenSerial, CustomerID: lr.CustomerID, Sequence: lr.Sequence,
		Balance: lr.WalletBalance + lr.Amount, LastLoadID: protocol.LoadID(lr.TokenSerial, lr.Sequence), SignedAt: now,
		SignerSerial: pki.SerialHex(leaf.SerialNumber), Algorithm: protocol.AlgECDSAP256SHA256}
	a := protocol.LoadAllow{LoadHeader: protocol.LoadHeader{Version: 1, Type: protocol.TypeLoadAllow, TokenSerial: lr.TokenSerial,
		CertSerial: st.SignerSerial, KeyVersion: 1, Algorithm: protocol.AlgECDSAP256SHA256, Nonce: protocol.NewNonce(16), Timestamp: now,
		Sequence: lr.Sequence}, CustomerID: lr.CustomerID, LoadID: st.LastLoadID, Amount: lr.Amount, Expires: now.Add(g.validity),
		PrevSequence: lr.WalletSequence}
	if g.edit != nil {
		g.edit(&a, &st)
	}
	a.State, _ = protocol.EncodeWalletState(st)
	a.StateSignature, _ = protocol.Sign(g.signer, protocol.AlgECDSAP256SHA256, protocol.WalletStateDigest(a.State))
	enc, err := protocol.EncodeLoadAllow(a)
	if err != nil {
		panic(err)
	}
	sig, _ := protocol.Sign(g.signer, protocol.AlgECDSAP256SHA256, protocol.LoadAllowDigest(enc))
	return api.LoadAllow{LoadID: a.LoadID, Sequence: a.Sequence, Amount: a.Amount, NewBalance: st.Balance, Allow: enc, Signature: sig,
		Chain: g.chain, Expires: a.Expires}
}

func (g *loadServer) kinds() []protocol.ReportKind {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []protocol.ReportKind
	for _, r := range g.reports {
		out = append(out, r.Kind)
	}
	return out
}

// walletFixture is a customer with an in-memory key and meter card, and a
// gateway answering loads.
type walletFixture struct {
	*memFixture
	gw    *loadServer
	objs  *memObjects
	cards map[string]*memCard
	input string
	tty   bool
}

func newWalletFixture(t *testing.T) *walletFixture {
	t.Helper()
	m := newMemFixture(t)
	f := &walletFixture{memFixture: m, objs: newMemObjects(), cards: map[string]*memCard{}, tty: true}
	f.gw = newLoadServer(t, m.pki, loadService)
	m.cfg = writeConfig(t, filepath.Dir(m.cfg),
		"log: {level: error, format: console}",
		"token: {module: /nonexistent/opensc-pkcs11.so}",
		"gateway_url: "+f.gw.srv.URL,
		"ca_file: "+m.pki.rootFile,
		"state_dir: "+m.stateDir,
		"timeout: 5s",
		"load: {confirm_timeout: 200ms}",
	)
	f.cards["Meter card"] = &memCard{memObjects: newMemObjects(), serial: "CARD0001", label: "Meter card", pin: "card-pin"}
	oldObjs, oldCard, oldInput := openKeyObjects, openCard, confirmInput
	t.Cleanup(func() { openKeyObjects, openCard, confirmInput = oldObjs, oldCard, oldInput })
	openKeyObjects = func(*app, *unlockedKey) (keyObjects, func() error, error) {
		return f.objs, func() error { return nil }, nil
	}
	openCard = func(_ *app, sel hsm.Selector, pin []byte) (cardToken, error) {
		for _, c := range f.cards {
			if sel.Label == c.label || sel.Serial == c.serial {
				if pin != nil && string(pin) != c.pin {
					return nil, hsm.ErrWrongPIN
				}
				return c, nil
			}
		}
		return nil, hsm.ErrTokenAbsent
	}
	confirmInput = func() (io.Reader, bool) { return strings.NewReader(f.input), f.tty }
	t.Setenv("GRIDPAY_CARD_PIN", "card-pin")
	return f
}

func (f *walletFixture) run(t *testing.T, args ...string) result {
	t.Helper()
	return runApp(t, func(a *app) {
		a.openKey = func(context.Context) (*unlockedKey, error) {
			return &unlockedKey{TokenSerial: testSerial, TokenLabel: "GridPay Key", Leaf: f.leaf, CA: f.pki.customer.Cert, Signer: f.key}, nil
		}
	}, append([]string{"--config", f.cfg}, args...)...)
}

func (f *walletFixture) walletJSON(t *testing.T) walletView {
	t.Helper()
	r := f.run(t, "wallet", "--json")
	if r.err != nil {
		t.Fatalf("wallet: %s", r)
	}
	var v walletView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("wallet --json: %v\n%s", err, r.stdout)
	}
	return v
}

func (f *walletFixture) loadOK(t *testing.T, amount string) loadResult {
	t.Helper()
	r := f.run(t, "load", "--amount", amount, "--yes", "--json")
	if r.err != nil {
		t.Fatalf("load %s: %s", amount, r)
	}
	var res loadResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("load --json: %v\n%s", err, r.stdout)
	}
	return res
}

func TestLoadHappyPath(t *testing.T) {
	f := newWalletFixture(t)
	res := f.loadOK(t, "500.00")
	if res.Status != "confirmed" || res.Sequence != 1 || res.Balance != 500_00 || res.LoadID != protocol.LoadID(testSerial, 1) {
		t.Fatalf("first load %+v", res)
	}
	req := f.gw.requests[0]
	if req.WalletBalance != 0 || req.WalletSequence != 0 || req.Account != testMe.Customer.AccountNumber || req.CustomerID != testCustomer || req.Amount != 500_00 {
		t.Fatalf("request %+v", req)
	}
	// A state report first, then the receipt.
	if k := f.gw.kinds(); len(k) != 2 || k[0] != protocol.ReportState || k[1] != protocol.ReportReceipt {
		t.Fatalf("reports %v", k)
	}
	res = f.loadOK(t, "200.00")
	if res.Sequence != 2 || res.Balance != 700_00 {
		t.Fatalf("second load %+v", res)
	}
	if req := f.gw.requests[1]; req.WalletBalance != 500_00 || req.WalletSequence != 1 || req.WalletLastLoad != protocol.LoadID(testSerial, 1) {
		t.Fatalf("second request %+v", req)
	}
	v := f.walletJSON(t)
	if v.Balance != 700_00 || v.Sequence != 2 || v.LastLoad != protocol.LoadID(testSerial, 2) || len(v.Recent) != 2 || !v.LogOK ||
		v.Attempt == nil || v.Attempt.Outcome != attemptApplied {
		t.Fatalf("wallet %+v", v)
	}
	r := f.run(t, "wallet")
	if r.err != nil || !strings.Contains(r.stdout, "balance    ¥700.00") || !strings.Contains(r.stdout, "sequence   2") {
		t.Fatalf("wallet: %s", r)
	}
}

func TestLoadRefusesBadAllows(t *testing.T) {
	for _, c := range []struct {
		name string
		code protocol.ErrorCode
		tune func(t *testing.T, f *walletFixture)
	}{
		{"tampered", protocol.ErrAllowSignature, func(t *testing.T, f *walletFixture) { t.Setenv(loadFaultEnv, "tamper-allow") }},
		{"another service's key", protocol.ErrAllowCertificate, func(t *testing.T, f *walletFixture) {
			other := newLoadServer(t, f.pki, "gateway")
			f.gw.signer, f.gw.chain = other.signer, other.chain
		}},
		{"revoked signer", protocol.ErrAllowCertificate, func(t *testing.T, f *walletFixture) { f.gw.revokeSigner() }},
		{"no CRL of the signer's CA", protocol.ErrAllowCertificate, func(t *testing.T, f *walletFixture) {
			// A gateway handing out only the root's CRL: the signer cannot
			// be checked, and an unchecked allow is refused.
			f.gw.pki = &testPKI{root: f.pki.root, customer: f.pki.customer, services: f.pki.root}
		}},
		{"expired", protocol.ErrAllowExpired, func(t *testing.T, f *walletFixture) { f.gw.edit = expireNow }},
		{"another amount", protocol.ErrAllowMismatch, func(t *testing.T, f *walletFixture) {
			f.gw.edit = func(a *protocol.LoadAllow, st *protocol.WalletState) { a.Amount += 100; st.Balance += 100 }
		}},
		{"too much on the wallet", protocol.ErrAllowMismatch, func(t *testing.T, f *walletFixture) {
			f.gw.edit = func(a *protocol.LoadAllow, st *protocol.WalletState) { st.Balance += 100 }
		}},
		{"clock", protocol.ErrAllowClock, func(t *testing.T, f *walletFixture) {
			f.gw.edit = func(a *protocol.LoadAllow, st *protocol.WalletState) {
				a.Timestamp, a.Expires = a.Timestamp.Add(time.Hour), a.Expires.Add(time.Hour)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newWalletFixture(t)
			c.tune(t, f)
			r := f.run(t, "load", "--amount", "500.00", "--yes", "--json")
			if r.err == nil || r.code != cli.ExitError || !strings.Contains(r.stdout, `"status": "cancelling"`) {
				t.Fatalf("a bad allow was taken: %s", r)
			}
			reps := f.gw.reports
			last := reps[len(reps)-1]
			if last.Kind != protocol.ReportError || last.ErrorCode != c.code || last.LoadSequence != 1 || last.Sequence != 0 {
				t.Fatalf("error report %+v (%s)", last, last.ErrorText)
			}
			if want := map[string]string{"revoked signer": "revoked", "no CRL of the signer's CA": "CRL"}[c.name]; !strings.Contains(last.ErrorText, want) {
				t.Fatalf("error report says %q, want it to mention %q", last.ErrorText, want)
			}
			os.Unsetenv(loadFaultEnv)
			v := f.walletJSON(t)
			if v.Balance != 0 || v.Sequence != 0 || v.Attempt == nil || v.Attempt.Outcome != attemptAbandoned {
				t.Fatalf("wallet after a refused allow %+v", v)
			}
		})
	}
}

func expireNow(a *protocol.LoadAllow, _ *protocol.WalletState) {
	a.Timestamp = a.Timestamp.Add(-2 * time.Minute)
	a.Expires = a.Timestamp.Add(time.Second)
}

func TestLoadConfirmation(t *testing.T) {
	f := newWalletFixture(t)
	f.input = "n\n"
	r := f.run(t, "load", "--amount", "10.00")
	if r.err == nil || !strings.Contains(r.err.Error(), "not confirmed") || len(f.gw.raw) != 0 {
		t.Fatalf("declined: %s", r)
	}
	// No answer in time is no.
	f.input = ""
	confirmInput = func() (io.Reader, bool) { pr, _ := io.Pipe(); return pr, true }
	start := time.Now()
	r = f.run(t, "load", "--amount", "10.00")
	if r.err == nil || !strings.Contains(r.stderr, "no answer in time") || time.Since(start) > 5*time.Second || len(f.gw.raw) != 0 {
		t.Fatalf("timed out: %s", r)
	}
	// Without a terminal, only --yes confirms.
	confirmInput = func() (io.Reader, bool) { return strings.NewReader("y\n"), false }
	if r = f.run(t, "load", "--amount", "10.00"); r.code != cli.ExitUsage || !strings.Contains(r.err.Error(), "--yes") {
		t.Fatalf("no terminal: %s", r)
	}
	confirmInput = func() (io.Reader, bool) { return strings.NewReader("yes\n"), true }
	if r = f.run(t, "load", "--amount", "10.00"); r.err != nil {
		t.Fatalf("confirmed: %s", r)
	}
	if r = f.run(t, "load"); r.code != cli.ExitUsage {
		t.Fatalf("no amount: %s", r)
	}
}

func TestLoadGatewayAnswers(t *testing.T) {
	f := newWalletFixture(t)
	// Unavailable twice: the very same request is sent again.
	f.gw.unavailable = 2
	res := f.loadOK(t, "50.00")
	if res.Status != "confirmed" || len(f.gw.raw) != 3 || !bytes.Equal(f.gw.raw[0], f.gw.raw[2]) {
		t.Fatalf("retried load %+v, %d requests", res, len(f.gw.raw))
	}
	// Refused: the sequence is spent, nothing changed.
	f.gw.refuse = &api.Error{Code: api.CodeLoadPending, Message: "load 1 of this USB key is still being settled"}
	r := f.run(t, "load", "--amount", "50.00", "--yes")
	if r.code != cli.ExitConflict || !strings.Contains(r.err.Error(), "still being settled") {
		t.Fatalf("refused: %s", r)
	}
	f.gw.refuse = nil
	v := f.walletJSON(t)
	if v.Balance != 50_00 || v.Attempt.Sequence != 2 || v.Attempt.Outcome != attemptRefused {
		t.Fatalf("wallet %+v", v)
	}
	res = f.loadOK(t, "1.00")
	if res.Sequence != 3 {
		t.Fatalf("next load took sequence %d", res.Sequence)
	}
	// GridPay's records ahead of the key: warned.
	f.gw.confirmed = &api.WalletRecord{Sequence: 9, LoadID: protocol.LoadID(testSerial, 9), Balance: 1}
	if r := f.run(t, "wallet"); !strings.Contains(r.stderr, "behind GridPay's records") {
		t.Fatalf("no warning: %s", r)
	}
}

func TestWalletTamperedOnKey(t *testing.T) {
	f := newWalletFixture(t)
	f.loadOK(t, "500.00")
	// Raise the balance inside the signed state: the signature fails.
	f.objs.edit(t, walletLabel, func(v []byte) []byte {
		var rec walletRecord
		json.Unmarshal(v, &rec)
		st, _ := protocol.DecodeWalletState(rec.State)
		st.Balance = 5_000_00
		rec.State, _ = protocol.EncodeWalletState(st)
		b, _ := json.Marshal(rec)
		return b
	})
	for _, args := range [][]string{{"wallet"}, {"load", "--amount", "1.00", "--yes"}} {
		r := f.run(t, args...)
		if r.code != cli.ExitAuth || !strings.Contains(r.err.Error(), "does not verify") {
			t.Fatalf("%v on a forged wallet: %s", args, r)
		}
	}
	// Spending more than was loaded is no better.
	f2 := newWalletFixture(t)
	f2.loadOK(t, "5.00")
	f2.objs.edit(t, walletLabel, func(v []byte) []byte {
		return bytes.Replace(v, []byte(`"spent":0`), []byte(`"spent":-100`), 1)
	})
	if r := f2.run(t, "wallet"); r.code != cli.ExitAuth {
		t.Fatalf("negative spending: %s", r)
	}
}

func TestWalletLogDetectsEdits(t *testing.T) {
	f := newWalletFixture(t)
	f.loadOK(t, "5.00")
	f.loadOK(t, "6.00")
	path := filepath.Join(f.stateDir, "wallet-"+testSerial+".log")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(b, []byte(`"amount":500`), []byte(`"amount":900`), 1)
	if err := os.WriteFile(path, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	v := f.walletJSON(t)
	if v.LogOK || !strings.Contains(v.LogIssue, "entry 1 was edited") {
		t.Fatalf("edited log %+v", v)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	os.WriteFile(path, append(lines[1], '\n'), 0o600)
	if v := f.walletJSON(t); v.LogOK || !strings.Contains(v.LogIssue, "removed or inserted") {
		t.Fatalf("truncated log %+v", v)
	}
}

func (f *walletFixture) cardJSON(t *testing.T, args ...string) (cardView, result) {
	t.Helper()
	r := f.run(t, append(append([]string{"card"}, args...), "--card-label", "Meter card", "--json")...)
	var v cardView
	if r.err == nil {
		if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
			t.Fatalf("card %v: %v\n%s", args, err, r.stdout)
		}
	}
	return v, r
}

func TestCardIssueAndTransfer(t *testing.T) {
	f := newWalletFixture(t)
	if _, r := f.cardJSON(t, "balance"); r.code != cli.ExitNotFound {
		t.Fatalf("balance before issuance: %s", r)
	}
	v, r := f.cardJSON(t, "issue", "--card-number", "3301-0001-0007")
	if r.err != nil || v.Card != "****0007" || v.CardSerial != "CARD0001" || strings.Contains(r.stdout, "3301-0001-0007") {
		t.Fatalf("issue: %s", r)
	}
	f.loadOK(t, "500.00")
	v, r = f.cardJSON(t, "balance")
	if r.err != nil || v.CardBalance != 0 || v.WalletBalance != 500_00 || v.Total != 500_00 {
		t.Fatalf("balance: %+v %s", v, r)
	}
	v, r = f.cardJSON(t, "transfer", "--amount", "200.00", "--yes")
	if r.err != nil || v.CardBalance != 200_00 || v.WalletBalance != 300_00 || v.Total != 500_00 || v.Transferred != 200_00 {
		t.Fatalf("transfer: %+v %s", v, r)
	}
	if _, r = f.cardJSON(t, "transfer", "--amount", "300.01", "--yes"); r.err == nil || !strings.Contains(r.err.Error(), "less than") {
		t.Fatalf("more than the wallet holds: %s", r)
	}
	// The next load starts from what the wallet holds now.
	f.loadOK(t, "100.00")
	if req := f.gw.requests[len(f.gw.requests)-1]; req.WalletBalance != 300_00 {
		t.Fatalf("load after a transfer reported %d", req.WalletBalance)
	}
	v, _ = f.cardJSON(t, "balance")
	if v.WalletBalance != 400_00 || v.CardBalance != 200_00 {
		t.Fatalf("after the load %+v", v)
	}
	// Wrong card PIN.
	t.Setenv("GRIDPAY_CARD_PIN", "nope")
	if _, r = f.cardJSON(t, "balance"); r.code != cli.ExitAuth {
		t.Fatalf("wrong card PIN: %s", r)
	}
}

// A crash between the writes never loses nor duplicates money.
func TestCardTransferCrashes(t *testing.T) {
	f := newWalletFixture(t)
	f.cardJSON(t, "issue", "--card-number", "3301-0001-0007")
	f.loadOK(t, "500.00")
	total := money.Fen(500_00)

	t.Setenv(cardFaultEnv, "crash-after-prepare")
	if _, r := f.cardJSON(t, "transfer", "--amount", "100.00", "--yes"); r.err == nil {
		t.Fatalf("the fault did not stop it: %s", r)
	}
	if w := f.walletJSON(t); w.Transfer == nil || w.Balance != 400_00 {
		t.Fatalf("after the crash %+v", w)
	}
	// A load waits until the transfer is settled.
	if r := f.run(t, "load", "--amount", "1.00", "--yes"); r.code != cli.ExitConflict {
		t.Fatalf("load with a transfer pending: %s", r)
	}
	os.Unsetenv(cardFaultEnv)
	v, r := f.cardJSON(t, "balance")
	if r.err != nil || v.Recovered != "undone" || v.WalletBalance != 500_00 || v.CardBalance != 0 || v.Total != total {
		t.Fatalf("recovered %+v %s", v, r)
	}

	t.Setenv(cardFaultEnv, "crash-after-card")
	f.cardJSON(t, "transfer", "--amount", "100.00", "--yes")
	os.Unsetenv(cardFaultEnv)
	v, r = f.cardJSON(t, "balance")
	if r.err != nil || v.Recovered != "completed" || v.WalletBalance != 400_00 || v.CardBalance != 100_00 || v.Total != total {
		t.Fatalf("recovered %+v %s", v, r)
	}
	if w := f.walletJSON(t); w.Transfer != nil || !w.LogOK {
		t.Fatalf("wallet %+v", w)
	}
}

func TestCardMutualAuthentication(t *testing.T) {
	f := newWalletFixture(t)
	f.cardJSON(t, "issue", "--card-number", "3301-0001-0007")
	card := f.cards["Meter card"]

	// Another card in the reader, issued to someone else's key.
	f.cards["Other"] = &memCard{memObjects: newMemObjects(), serial: "CARD0002", label: "Other", pin: "card-pin"}
	other, _ := json.Marshal(cardIdentity{Version: 1, CardNumber: "3301-0001-0007", CardSerial: "CARD0002", KeySerial: "SOMEONE-ELSE"})
	f.cards["Other"].WriteData(context.Background(), hsm.DataObject{Application: walletApplication, Label: cardIdentityLabel, Value: other})
	r := f.run(t, "card", "balance", "--card-label", "Other")
	if r.code != cli.ExitAuth || strings.Contains(r.err.Error(), "3301-0001-0007") {
		t.Fatalf("another card: %s", r)
	}
	// The right identity copied onto a card without the key: the
	// challenge fails.
	f.cards["Copy"] = &memCard{memObjects: newMemObjects(), serial: "CARD0001", label: "Copy", pin: "card-pin", key: newECKey(t)}
	ident, _ := card.ReadData(context.Background(), walletApplication, cardIdentityLabel)
	f.cards["Copy"].WriteData(context.Background(), ident)
	if r := f.run(t, "card", "balance", "--card-label", "Copy"); r.code != cli.ExitAuth || !strings.Contains(r.err.Error(), "failed authentication") {
		t.Fatalf("a copied identity: %s", r)
	}
	// The card remembers another key's public key: this key fails the
	// card's check.
	card.edit(t, cardIdentityLabel, func(v []byte) []byte {
		var id cardIdentity
		json.Unmarshal(v, &id)
		id.KeyPublic, _ = x509.MarshalPKIXPublicKey(newECKey(t).Public())
		b, _ := json.Marshal(id)
		return b
	})
	if r := f.run(t, "card", "balance", "--card-label", "Meter card"); r.code != cli.ExitAuth || !strings.Contains(r.err.Error(), "USB key failed") {
		t.Fatalf("key unknown to the card: %s", r)
	}
	if r := f.run(t, "card", "balance"); r.code != cli.ExitUsage {
		t.Fatalf("no card named: %s", r)
	}
}
