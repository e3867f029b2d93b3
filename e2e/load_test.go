//go:build integration

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/internal/provision"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	simplatform "github.com/gridpay/gridpay/sim/platform"
	"github.com/gridpay/gridpay/store"
)

// allowValidity is the stacks' load.allow_validity: short, so that the
// refunds that wait for an allow's expiry come quickly.
const allowValidity = 4 * time.Second

// newLoadStack is a stack for loads: the platform simulator, worker and
// gateway running, allows valid for validity, and (signer) the load signer
// key issued in the HSM.
func newLoadStack(t testing.TB, signer bool, validity time.Duration) *stack {
	t.Helper()
	s := newStack(t)
	s.write(s.config, readFile(t, s.config)+fmt.Sprintf("load: {allow_validity: %s, receipt_grace: 1s}\n", validity))
	if signer {
		s.issueLoadSigner()
	}
	s.startSimulator()
	s.startWorker()
	s.startGateway()
	return s
}

func (s *stack) issueLoadSigner() {
	s.admin("ca", "issue", "--name", "load", "--key-label", "gridpay-load-signer")
}

// fund credits a customer's prepaid account at the platform.
func (s *stack) fund(customerID string, amount money.Fen) {
	s.t.Helper()
	ctx := context.Background()
	plat, err := simplatform.Open(ctx, s.simDSN, simplatform.OpenOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	defer plat.Close()
	if _, err := plat.Service().CreditPrepaid(ctx, customerID, fmt.Sprintf("e2e-fund-%s-%d", customerID, time.Now().UnixNano()), amount, "e2e funding"); err != nil {
		s.t.Fatal(err)
	}
}

// clientEnv runs the client with extra environment (test faults).
func (k *usbKey) clientEnv(env []string, args ...string) result {
	k.s.t.Helper()
	return k.s.exec(env, "client", append([]string{"--config", k.config}, args...)...)
}

// load runs client load and decodes its result; fault is a test fault of
// the client ("" for none).
type loadOutput struct {
	LoadID   string    `json:"load_id"`
	Sequence uint64    `json:"sequence"`
	Amount   money.Fen `json:"amount"`
	Status   string    `json:"status"`
	Balance  money.Fen `json:"balance"`
	Reason   string    `json:"reason"`
}

func (k *usbKey) load(amount, fault string) (loadOutput, result) {
	k.s.t.Helper()
	var env []string
	if fault != "" {
		env = []string{"GRIDPAY_TEST_LOAD_FAULT=" + fault}
	}
	r := k.clientEnv(env, "load", "--amount", amount, "--yes", "--json")
	var out loadOutput
	_ = json.Unmarshal([]byte(r.out), &out)
	return out, r
}

type walletOutput struct {
	Balance  money.Fen        `json:"balance"`
	Sequence uint64           `json:"sequence"`
	Loads    []api.LoadStatus `json:"loads"`
	LogOK    bool             `json:"log_verified"`
}

// wallet runs client wallet (which reports the key's state to GridPay).
func (k *usbKey) wallet() walletOutput {
	k.s.t.Helper()
	var w walletOutput
	k.clientJSON(&w, "wallet")
	return w
}

// waitLoad waits until the load's record has the status.
func (s *stack) waitLoad(loadID string, want store.LoadStatus, within time.Duration) store.Load {
	s.t.Helper()
	db := s.db()
	deadline := time.Now().Add(within)
	for {
		l, err := store.LoadByLoadID(context.Background(), db, loadID)
		if err == nil && l.Status == want {
			return l
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("load %s is %s (%v), want %s\n--- worker ---\n%s", loadID, l.Status, err, want, tail(s.logOf("worker"), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkLoadMoney asserts the load invariant over GridPay and the platform:
// each load's debit at the platform ends as a wallet credit (confirmed) or
// a refund entry, exactly one, and in total debits = credits + refunds. It
// returns the confirmed amount per key.
func (s *stack) checkLoadMoney(settled bool) map[string]money.Fen {
	s.t.Helper()
	ctx := context.Background()
	db := s.db()
	vs, err := store.CheckLoadInvariants(ctx, db)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, v := range vs {
		if !v.Open || settled {
			s.t.Errorf("money invariant: %s", v)
		}
	}
	plat, err := simplatform.Open(ctx, s.simDSN, simplatform.OpenOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	defer plat.Close()
	rows, err := db.Query(ctx, `SELECT load_id, token_serial, status, amount, debited_at IS NOT NULL FROM loads`)
	if err != nil {
		s.t.Fatal(err)
	}
	type load struct {
		id, token, status string
		amount            int64
		debited           bool
	}
	var loads []load
	for rows.Next() {
		var l load
		if err := rows.Scan(&l.id, &l.token, &l.status, &l.amount, &l.debited); err != nil {
			s.t.Fatal(err)
		}
		loads = append(loads, l)
	}
	rows.Close()
	var debits, credits, refunds, inFlight money.Fen
	confirmed := map[string]money.Fen{}
	for _, l := range loads {
		d, err := plat.Service().PrepaidEntry(ctx, l.id)
		debited := err == nil && d.Amount == -money.Fen(l.amount)
		if err != nil && !errors.Is(err, platform.ErrNotFound) {
			s.t.Fatal(err)
		}
		r, err := plat.Service().PrepaidEntry(ctx, l.id+":refund")
		refunded := err == nil && r.Amount == money.Fen(l.amount)
		if debited != l.debited {
			s.t.Errorf("load %s (%s): GridPay says debited=%v, the platform %v", l.id, l.status, l.debited, debited)
		}
		if refunded != (l.status == string(store.LoadRefunded)) {
			s.t.Errorf("load %s is %s at GridPay, refunded=%v at the platform", l.id, l.status, refunded)
		}
		if debited {
			debits += money.Fen(l.amount)
		}
		switch l.status {
		case string(store.LoadConfirmed):
			credits += money.Fen(l.amount)
			confirmed[l.token] += money.Fen(l.amount)
		case string(store.LoadRefunded):
			refunds += money.Fen(l.amount)
		case string(store.LoadDebited), string(store.LoadAllowed):
			inFlight += money.Fen(l.amount)
		}
	}
	if debits != credits+refunds+inFlight {
		s.t.Errorf("the platform debited %s; wallets were credited %s and %s refunded (%s in flight)", debits.Display(), credits.Display(),
			refunds.Display(), inFlight.Display())
	}
	if settled && inFlight != 0 {
		s.t.Errorf("%s still in flight", inFlight.Display())
	}
	return confirmed
}

// refusals counts the gateway's audited refusals whose reason starts with
// prefix.
func (s *stack) refusals(prefix string) int {
	s.t.Helper()
	var n int
	if err := s.db().QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'gateway.refuse' AND detail->>'reason' LIKE $1`,
		prefix+"%").Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// keyClient is the USB key used in-process: its signer and a TLS client.
type keyClient struct {
	s      *stack
	token  *hsm.Token
	signer *hsm.Signer
	leaf   *x509.Certificate
	hc     *http.Client
}

func (s *stack) keyClient(t testing.TB, k *usbKey) *keyClient {
	t.Helper()
	ctx := context.Background()
	tok, err := hsm.OpenToken(s.module, hsm.Selector{Label: k.label}, []byte("pin-"+k.label), hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
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
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(readFile(t, filepath.Join(s.dir, "pki", "root.pem"))))
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4, TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: roots,
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw, ca.Raw}, PrivateKey: signer, Leaf: leaf}},
	}}}
	return &keyClient{s: s, token: tok, signer: signer, leaf: leaf, hc: hc}
}

// post sends body and decodes a 200 answer into out; otherwise it returns
// the status and the error body.
func (c *keyClient) post(path string, body, out any) (int, api.Error, error) {
	b, _ := json.Marshal(body)
	resp, err := c.hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", c.s.gwPort, path), "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, api.Error{}, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		_ = json.Unmarshal(data, &eb)
		return resp.StatusCode, eb.Error, nil
	}
	return resp.StatusCode, api.Error{}, json.Unmarshal(data, out)
}

func (c *keyClient) header(typ protocol.LoadMessageType, seq uint64) protocol.LoadHeader {
	return protocol.LoadHeader{Version: 1, Type: typ, TokenSerial: c.token.Info().Serial, CertSerial: pki.SerialHex(c.leaf.SerialNumber),
		KeyVersion: 1, Algorithm: protocol.AlgECDSAP256SHA256, Nonce: protocol.NewNonce(16), Timestamp: time.Now().UTC().Truncate(time.Second), Sequence: seq}
}

func (c *keyClient) request(t testing.TB, customer, account string, seq uint64, w protocol.WalletState, amount money.Fen) api.LoadRequest {
	t.Helper()
	r := protocol.LoadRequest{LoadHeader: c.header(protocol.TypeLoadRequest, seq), CustomerID: customer, Account: account, Amount: amount, Currency: "CNY"}
	if w.Sequence > 0 {
		r.WalletBalance, r.WalletSequence, r.WalletLastLoad = w.Balance, w.Sequence, w.LastLoadID
	}
	enc, err := protocol.EncodeLoadRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := protocol.Sign(c.signer, protocol.AlgECDSAP256SHA256, protocol.LoadRequestDigest(enc))
	if err != nil {
		t.Fatal(err)
	}
	return api.LoadRequest{Request: enc, Signature: sig}
}

func (c *keyClient) receipt(t testing.TB, st protocol.WalletState, stateEnc []byte) api.LoadReport {
	t.Helper()
	r := protocol.LoadReport{LoadHeader: c.header(protocol.TypeLoadReport, st.Sequence), Kind: protocol.ReportReceipt, LoadSequence: st.Sequence,
		LoadID: st.LastLoadID, WalletBalance: st.Balance, Attempt: st.Sequence, State: stateEnc}
	enc, err := protocol.EncodeLoadReport(r)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := protocol.Sign(c.signer, protocol.AlgECDSAP256SHA256, protocol.LoadReportDigest(enc))
	if err != nil {
		t.Fatal(err)
	}
	return api.LoadReport{Report: enc, Signature: sig}
}

// cardBalances reads the wallet and the card through client card balance.
type cardOutput struct {
	CardBalance   money.Fen `json:"card_balance"`
	WalletBalance money.Fen `json:"wallet_balance"`
	Total         money.Fen `json:"total"`
	Recovered     string    `json:"recovered"`
}

// One customer's key through every path the exchange can take, on the
// real programs; the money invariant after each step, and wallet + card
// always adding up to what GridPay credited.
func TestLoadEndToEnd(t *testing.T) {
	s := newLoadStack(t, true, allowValidity)
	customer := s.customer()
	k := s.provision(customer, "load-key")
	cardPIN := s.secret("card.pin", "pin-card")
	s.admin("tokens", "init", "--token-label", "meter-card", "--so-pin-file", s.secret("card.so", "so-pin-card"), "--pin-file", cardPIN)
	s.fund(customer, money.Yuan(10_000))
	cardArgs := []string{"--card-label", "meter-card", "--card-pin-file", cardPIN}

	// The happy path: the key signs, the HSM allows, the wallet is
	// credited, the receipt confirms.
	out, r := k.load("500.00", "")
	if r.code != 0 || out.Status != "confirmed" || out.Balance != money.Yuan(500) || out.Sequence != 1 {
		t.Fatalf("load: %s", r)
	}
	l := s.waitLoad(out.LoadID, store.LoadConfirmed, 10*time.Second)
	if l.ConfirmedBy != store.ConfirmedByReceipt {
		t.Fatalf("load 1 %+v", l)
	}
	if w := k.wallet(); w.Balance != money.Yuan(500) || w.Sequence != 1 || !w.LogOK {
		t.Fatalf("wallet %+v", w)
	}
	s.checkLoadMoney(true)

	// The meter card: bound, then 120.00 passed on from the wallet.
	k.clientJSON(&struct{}{}, append([]string{"card", "issue", "--card-number", "3301-0001-0042"}, cardArgs...)...)
	var c cardOutput
	k.clientJSON(&c, append([]string{"card", "transfer", "--amount", "120.00", "--yes"}, cardArgs...)...)
	if c.CardBalance != money.Yuan(120) || c.WalletBalance != money.Yuan(380) || c.Total != money.Yuan(500) {
		t.Fatalf("transfer %+v", c)
	}
	if confirmed := s.checkLoadMoney(true); confirmed[kTokenSerial(t, s, k)] != c.Total {
		t.Fatalf("GridPay credited %s, wallet and card hold %s", confirmed[kTokenSerial(t, s, k)].Display(), c.Total.Display())
	}

	// A tampered request: refused at the gateway, audited, nothing moved.
	before := s.refusals("load request refused")
	if _, r = k.load("100.00", "tamper-request"); r.code == 0 || s.refusals("load request refused") != before+1 {
		t.Fatalf("tampered request: %s", r)
	}
	s.checkLoadMoney(true)

	// A tampered receipt: refused and audited; the wallet took the load,
	// and the key's next contact confirms it.
	before = s.refusals("load report refused")
	out, r = k.load("100.00", "tamper-receipt")
	if r.code != 0 || out.Status != "applied, not confirmed" || s.refusals("load report refused") != before+1 {
		t.Fatalf("tampered receipt: %s", r)
	}
	s.waitLoad(out.LoadID, store.LoadAllowed, 5*time.Second)
	w := k.wallet()
	if l := s.waitLoad(out.LoadID, store.LoadConfirmed, 5*time.Second); l.ConfirmedBy != store.ConfirmedByContact || w.Balance != money.Yuan(480) {
		t.Fatalf("after the contact: %+v, wallet %+v", l, w)
	}
	s.checkLoadMoney(true)

	// A replayed request of an old sequence: refused, audited, nothing moved.
	kc := s.keyClient(t, k)
	var allow api.LoadAllow
	status, apiErr, err := kc.post(api.PathLoads, kc.request(t, customer, s.accountOf(customer), 1, protocol.WalletState{}, money.Yuan(1)), &allow)
	if err != nil || status != http.StatusConflict || apiErr.Code != api.CodeSequenceUsed {
		t.Fatalf("replayed sequence 1: %d %+v %v", status, apiErr, err)
	}
	if s.refusals("replayed load request") != 1 {
		t.Fatal("the replay was not audited")
	}
	s.checkLoadMoney(true)

	// A tampered allow: the key refuses it and reports; refunded once the
	// allow has expired.
	out, r = k.load("70.00", "tamper-allow")
	if r.code == 0 || out.Status != "cancelling" {
		t.Fatalf("tampered allow: %s", r)
	}
	if l := s.waitLoad(out.LoadID, store.LoadRefunded, 3*allowValidity); !strings.Contains(l.Reason, "refused the load") {
		t.Fatalf("refund reason %q", l.Reason)
	}
	s.checkLoadMoney(true)
	// An allow arriving after its expiry: refused by the key, refunded.
	out, r = k.load("60.00", "late-allow")
	if r.code == 0 || !strings.Contains(r.err, "expired") {
		t.Fatalf("expired allow: %s", r)
	}
	s.waitLoad(out.LoadID, store.LoadRefunded, 3*allowValidity)
	s.checkLoadMoney(true)

	// The receipt never arrives; the key comes back with its sequence
	// advanced: confirmed, no refund.
	out, r = k.load("50.00", "drop-receipt")
	if r.code != 0 || out.Status != "applied, not confirmed" {
		t.Fatalf("dropped receipt: %s", r)
	}
	time.Sleep(allowValidity + 2*time.Second) // past the expiry: awaiting the key's contact
	s.waitLoad(out.LoadID, store.LoadAllowed, time.Second)
	k.wallet()
	if l := s.waitLoad(out.LoadID, store.LoadConfirmed, 5*time.Second); l.ConfirmedBy != store.ConfirmedByContact {
		t.Fatalf("confirmed by %s", l.ConfirmedBy)
	}
	s.checkLoadMoney(true)

	// The allow never reaches the wallet; the key comes back after the
	// expiry with its sequence not advanced: refunded.
	seq := out.Sequence + 1
	if _, r = k.load("40.00", "drop-allow"); r.code == 0 {
		t.Fatalf("dropped allow: %s", r)
	}
	loadID := protocol.LoadID(kc.token.Info().Serial, seq)
	s.waitLoad(loadID, store.LoadAllowed, 5*time.Second)
	time.Sleep(allowValidity + time.Second)
	w = k.wallet()
	s.waitLoad(loadID, store.LoadRefunded, 5*time.Second)

	// Money: debits = credits + refunds, per load and in total; and the
	// wallet and the card hold exactly what GridPay credited.
	confirmed := s.checkLoadMoney(true)
	k.clientJSON(&c, append([]string{"card", "balance"}, cardArgs...)...)
	if got := confirmed[kc.token.Info().Serial]; got != money.Yuan(650) || c.WalletBalance+c.CardBalance != got || w.Balance != c.WalletBalance {
		t.Fatalf("GridPay credited %s; the wallet holds %s and the card %s", got.Display(), c.WalletBalance.Display(), c.CardBalance.Display())
	}
	// A last load after all of it goes through.
	if out, r = k.load("1.00", ""); r.code != 0 || out.Status != "confirmed" || out.Balance != c.WalletBalance+money.Yuan(1) {
		t.Fatalf("last load: %s", r)
	}
	s.checkLoadMoney(true)

	// The key is lost with a load's allow out and unapplied: nothing can
	// settle it but an operator, once the allow has expired.
	if _, r = k.load("30.00", "drop-allow"); r.code == 0 {
		t.Fatalf("dropped allow: %s", r)
	}
	lost := protocol.LoadID(kc.token.Info().Serial, out.Sequence+1)
	s.waitLoad(lost, store.LoadAllowed, 5*time.Second)
	settle := func(args ...string) result {
		return s.exec(nil, "adminctl", append([]string{"--config", s.config, "loads", "settle", lost}, args...)...)
	}
	const why = "key reported lost; meter card shows no transfer"
	if r := settle("--refund", "--reason", why); r.code != cli.ExitConflict || !strings.Contains(r.err, "still bound") {
		t.Fatalf("settling a bound key's load: %s", r)
	}
	s.admin("unbind", "--token-serial", kc.token.Info().Serial, "--reason", "lost")
	if r := settle("--refund", "--reason", "lost"); r.code != cli.ExitUsage {
		t.Fatalf("settling without a real reason: %s", r)
	}
	time.Sleep(allowValidity + 2*time.Second) // past the expiry and the grace: awaiting the key's contact
	var open []struct {
		LoadID string `json:"load_id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(s.admin("loads", "list", "--open", "--customer", customer, "--json").out), &open); err != nil ||
		len(open) != 1 || open[0].LoadID != lost || open[0].Status != "allowed" {
		t.Fatalf("open loads %+v %v", open, err)
	}
	if r := s.admin("loads", "show", lost); !strings.Contains(r.out, "workflow: awaiting-contact; the key was unbound") {
		t.Fatalf("loads show: %s", r)
	}
	if r := settle("--refund", "--reason", why, "--json"); r.code != 0 || !strings.Contains(r.out, `"status": "refunded"`) {
		t.Fatalf("settle: %s", r)
	}
	if l := s.waitLoad(lost, store.LoadRefunded, time.Second); !strings.Contains(l.Reason, why) {
		t.Fatalf("refund reason %q", l.Reason)
	}
	if r := settle("--confirm", "--reason", why); r.code != cli.ExitConflict {
		t.Fatalf("settling a settled load again: %s", r)
	}
	var settler string
	if err := s.db().QueryRow(context.Background(), `SELECT actor FROM audit_log WHERE action = 'load.operator_settle' AND detail->>'reason' = $1`,
		why).Scan(&settler); err != nil || !strings.HasPrefix(settler, "adminctl:") {
		t.Fatalf("the settlement is not audited with the operator: %q %v", settler, err)
	}
	s.checkLoadMoney(true)
}

// kTokenSerial is the serial of a key's token, as GridPay records it.
func kTokenSerial(t testing.TB, s *stack, k *usbKey) string {
	t.Helper()
	var serial string
	if err := s.db().QueryRow(context.Background(), `SELECT token_serial FROM bindings WHERE customer_id = $1 AND status = 'active'`,
		k.customerID).Scan(&serial); err != nil {
		t.Fatal(err)
	}
	return serial
}

// accountOf is a customer's account number at the platform.
func (s *stack) accountOf(customerID string) string {
	s.t.Helper()
	plat, err := simplatform.Open(context.Background(), s.simDSN, simplatform.OpenOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	defer plat.Close()
	c, err := plat.Service().Customer(context.Background(), customerID)
	if err != nil {
		s.t.Fatal(err)
	}
	return c.AccountNumber
}

// runAsync runs a client command in the background.
func (k *usbKey) runAsync(args ...string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- k.s.exec(nil, "client", append([]string{"--config", k.config}, args...)...) }()
	return ch
}

// The worker killed at each step of a load, and started again: every load
// ends confirmed or refunded, never both, never twice.
func TestLoadWorkerKilled(t *testing.T) {
	// Long enough for a client retrying its request to get the allow
	// before it expires, however the restarts fall: a workflow task held
	// by a killed worker is retried only after its timeout (10 s), the
	// gateway answers a request it could not complete "unavailable" after
	// its own 10 s, and the client's next try gets the allow signed
	// meanwhile; two kills in a row on a busy machine took 33 s.
	const validity = time.Minute
	s := newLoadStack(t, false, validity)
	customer := s.customer()
	k := s.provision(customer, "kill-key")
	s.fund(customer, money.Yuan(10_000))
	token := s.keyClient(t, k).token.Info().Serial

	// Before verification: no worker when the request arrives.
	s.kill("worker")
	done := k.runAsync("load", "--amount", "10.00", "--yes", "--json")
	time.Sleep(3 * time.Second)
	s.startWorker()
	// The load signer was never issued: the debit is made, the signing
	// retried. The worker is killed there, the key issued, the worker
	// started again: the allow is signed and the client (sending its
	// request again) gets it.
	s.waitLoad(protocol.LoadID(token, 1), store.LoadDebited, 30*time.Second)
	s.kill("worker")
	s.issueLoadSigner()
	s.startWorker()
	if r := <-done; r.code != 0 || !strings.Contains(r.out, `"status": "confirmed"`) {
		t.Fatalf("load across two kills: %s\n--- gateway ---\n%s", r, tail(s.logOf("gateway"), 5))
	}
	s.checkLoadMoney(true)

	// The rest waits for allows to expire: the gateway (which sets every
	// load's timing) restarted with 10 s allows.
	const short = 10 * time.Second
	s.write(s.config, strings.Replace(readFile(t, s.config), "allow_validity: "+validity.String(), "allow_validity: "+short.String(), 1))
	if !strings.Contains(readFile(t, s.config), "allow_validity: "+short.String()) {
		t.Fatal("the configuration's allow_validity was not changed")
	}
	s.kill("gateway")
	s.startGateway()

	// After the allow, before the receipt (which never comes): killed;
	// after the restart the key's contact confirms.
	out, r := k.load("20.00", "drop-receipt")
	if r.code != 0 {
		t.Fatalf("dropped receipt: %s", r)
	}
	s.kill("worker")
	s.startWorker()
	k.wallet()
	s.waitLoad(out.LoadID, store.LoadConfirmed, 10*time.Second)
	s.checkLoadMoney(true)

	// While waiting for the key's contact, the allow never applied:
	// killed, the allow expires meanwhile, restarted; the contact refunds.
	if _, r = k.load("30.00", "drop-allow"); r.code == 0 {
		t.Fatalf("dropped allow: %s", r)
	}
	loadID := protocol.LoadID(token, 3)
	s.waitLoad(loadID, store.LoadAllowed, 5*time.Second)
	s.kill("worker")
	time.Sleep(short + time.Second)
	s.startWorker()
	k.wallet()
	s.waitLoad(loadID, store.LoadRefunded, 10*time.Second)
	s.checkLoadMoney(true)

	// Killed right after a refund was decided (an error report before the
	// expiry): the refund happens once, after the restart.
	out, r = k.load("40.00", "tamper-allow")
	if r.code == 0 {
		t.Fatalf("tampered allow: %s", r)
	}
	s.kill("worker")
	time.Sleep(short)
	s.startWorker()
	s.waitLoad(out.LoadID, store.LoadRefunded, 15*time.Second)
	s.checkLoadMoney(true)

	confirmed := s.checkLoadMoney(true)
	if w := k.wallet(); confirmed[token] != money.Yuan(30) || w.Balance != money.Yuan(30) {
		t.Fatalf("GridPay credited %s, the wallet holds %s", confirmed[token].Display(), w.Balance.Display())
	}
}

// BenchmarkLoadRoundTrip measures the load exchange on the real stack:
// ten customers, each with their USB key on SoftHSM2, load at once, ten
// loads each; each load is the three messages (the key signs the request,
// the HSM signs the wallet state and the allow, the key signs the
// receipt) with the allow verified in between. Figures are printed, not
// asserted:
//
//	go test -tags integration -run '^$' -bench LoadRoundTrip -benchtime 1x ./e2e/
func BenchmarkLoadRoundTrip(b *testing.B) {
	const concurrency, perKey = 10, 10
	s := newLoadStack(b, true, time.Minute)
	var ids []string
	r := s.run("platform-sim", "customers", "--dsn", s.simDSN, "--limit", fmt.Sprint(concurrency), "--json")
	if err := json.Unmarshal([]byte(r.out), &ids); err != nil || len(ids) < concurrency {
		b.Fatalf("customers: %v %s", err, r.out)
	}
	keys := make([]*usbKey, concurrency)
	for i, id := range ids[:concurrency] {
		keys[i] = s.provision(id, fmt.Sprintf("lbench-%02d", i))
		s.fund(id, money.Yuan(100_000))
	}
	clients := make([]*keyClient, concurrency)
	accounts := make([]string, concurrency)
	for i, k := range keys {
		clients[i], accounts[i] = s.keyClient(b, k), s.accountOf(k.customerID)
	}
	signerCert := func(a api.LoadAllow) *x509.Certificate {
		c, err := x509.ParseCertificate(a.Chain[0])
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	for i := 0; i < b.N; i++ {
		var mu sync.Mutex
		var latencies []time.Duration
		var wg sync.WaitGroup
		start := time.Now()
		for g := range concurrency {
			wg.Go(func() {
				c := clients[g]
				var wallet protocol.WalletState
				for n := range perKey {
					seq := uint64(i*perKey + n + 1)
					t0 := time.Now()
					var allow api.LoadAllow
					status, apiErr, err := c.post(api.PathLoads, c.request(b, keys[g].customerID, accounts[g], seq, wallet, money.Yuan(10)), &allow)
					if err != nil || status != http.StatusOK {
						b.Errorf("load %d of key %d: %d %+v %v", seq, g, status, apiErr, err)
						return
					}
					al, st, err := protocol.VerifyLoadAllow(signerCert(allow), allow.Allow, allow.Signature)
					if err != nil || al.Sequence != seq {
						b.Errorf("allow %d: %v", seq, err)
						return
					}
					var ans api.LoadReportAnswer
					if status, apiErr, err = c.post(api.PathLoadReports, c.receipt(b, st, al.State), &ans); err != nil || status != http.StatusOK ||
						len(ans.Loads) != 1 || ans.Loads[0].Status != "confirmed" {
						b.Errorf("receipt %d: %d %+v %v %+v", seq, status, apiErr, err, ans)
						return
					}
					wallet = st
					mu.Lock()
					latencies = append(latencies, time.Since(t0))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		if b.Failed() {
			return
		}
		slices.Sort(latencies)
		rate := float64(len(latencies)) / elapsed.Seconds()
		p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]
		b.ReportMetric(rate, "loads/s")
		b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
		b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")
		b.Logf("%d loads at concurrency %d in %s: %.1f loads/s; round trip (request, allow, receipt) p50 %s p99 %s",
			len(latencies), concurrency, elapsed.Round(time.Millisecond), rate, p50, p99)
	}
	s.checkLoadMoney(true)
}
