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
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
)

// Shared by the unit tests and the integration tests (same package).

const (
	testCustomer = "C1000001"
	testSerial   = "5A3C0E11D2F4B6A7"
)

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testPKI is GridPay's two-tier hierarchy with in-memory keys.
type testPKI struct {
	root, customer, services *pki.CA
	rootFile                 string
}

func newTestPKI(t testing.TB, name string, now time.Time) *testPKI {
	t.Helper()
	rk := newECKey(t)
	rc, err := pki.NewRoot(rk, pki.RootOptions{CommonName: name + " Root CA", Organization: "GridPay Power Supply Co.", Country: "CN", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{root: mustCA(t, rc, rk)}
	for _, ic := range []struct {
		role pki.Role
		cn   string
		dst  **pki.CA
	}{
		{pki.RoleCustomer, name + " Customer CA", &p.customer},
		{pki.RoleServices, name + " Services CA", &p.services},
	} {
		k := newECKey(t)
		c, err := pki.NewIssuing(p.root, k.Public(), pki.IssuingOptions{CommonName: ic.cn, Role: ic.role, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		*ic.dst = mustCA(t, c, k)
	}
	p.rootFile = filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(p.rootFile, pki.EncodeCertificatesPEM(p.root.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustCA(t testing.TB, c *x509.Certificate, k crypto.Signer) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issueCustomer issues the USB-key certificate for key (on a token or in
// memory) from a CSR signed by that key.
func (p *testPKI) issueCustomer(t testing.TB, key crypto.Signer, serial string, now time.Time, validity time.Duration) *x509.Certificate {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.customer.IssueCustomer(csr, pki.CustomerRequest{CustomerID: testCustomer, TokenSerial: serial, Now: now, Validity: validity})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serverCert is the gateway's certificate for 127.0.0.1, with the services
// CA in its chain.
func (p *testPKI) serverCert(t testing.TB) tls.Certificate {
	t.Helper()
	k := newECKey(t)
	c, err := p.services.IssueServer(k.Public(), pki.ServerRequest{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{c.Raw, p.services.Cert.Raw}, PrivateKey: k, Leaf: c}
}

// gatewayData is what the fake gateway serves.
var (
	testMe = api.Me{
		Customer: platform.Customer{
			ID: testCustomer, AccountNumber: "6222-0001-7788", Name: "华东特钢有限公司", Type: platform.LargeIndustry,
			VoltageGrade: "110kV", ContractCapacityKVA: 31500, ContactName: "Li Wei", ContactPhone: "021-5555-0101",
			Address: "88 Steelworks Road, Baoshan, Shanghai",
		},
		MeteringPoints: []platform.MeteringPoint{
			{ID: "MP-1", CustomerID: testCustomer, MeterNumber: "3301-000123", Location: "Substation A", Multiplier: 6000},
			{ID: "MP-2", CustomerID: testCustomer, MeterNumber: "3301-000124", Location: "Substation B", Multiplier: 1200},
		},
		Certificate: api.Certificate{Serial: "ab", TokenSerial: testSerial},
		Prepaid:     &platform.PrepaidAccount{CustomerID: testCustomer, Balance: 8_800_00},
		Alerts: []api.Alert{
			{Level: api.AlertCritical, BillID: "B-2026-01", Message: "bill 2026-01 is 75 days overdue; supply may be suspended"},
			{Level: api.AlertInfo, BillID: "B-2026-03", Message: "bill 2026-03 is due on 2026-04-15"},
		},
	}
	testConsumption = api.ConsumptionList{From: "2026-01", To: "2026-03", Items: []platform.Consumption{
		{Period: "2026-02", MeteringPointID: "MP-1", PeakKWh: 400_000, FlatKWh: 500_000, ValleyKWh: 300_000, TotalKWh: 1_200_000},
		{Period: "2026-01", MeteringPointID: "MP-1", PeakKWh: 500_000, FlatKWh: 600_000, ValleyKWh: 400_000, TotalKWh: 1_500_000},
		{Period: "2026-01", MeteringPointID: "MP-2", PeakKWh: 100_000, FlatKWh: 200_000, ValleyKWh: 200_000, TotalKWh: 500_000},
		{Period: "2026-03", MeteringPointID: "MP-1", PeakKWh: 0, FlatKWh: 0, ValleyKWh: 0, TotalKWh: 0},
	}}
	testBills = []platform.Bill{
		{ID: "B-2026-01", CustomerID: testCustomer, Period: "2026-01", IssuedOn: "2026-02-03", DueDate: "2026-02-20", KWh: 2_000_000,
			EnergyCharge: 123_456_78, BasicCharge: 9_450_000, LateFee: 1_234_56, Paid: 0, AmountDue: 133_925_34, Status: platform.BillOverdue},
		{ID: "B-2026-03", CustomerID: testCustomer, Period: "2026-03", IssuedOn: "2026-04-02", DueDate: "2026-04-15", KWh: 0,
			EnergyCharge: 0, BasicCharge: 9_450_000, LateFee: 0, Paid: 50_000_00, AmountDue: 44_500_00, Status: platform.BillOpen},
		{ID: "B-2025-12", CustomerID: testCustomer, Period: "2025-12", IssuedOn: "2026-01-03", DueDate: "2026-01-20", KWh: 1_000,
			EnergyCharge: 800_00, BasicCharge: 0, LateFee: 0, Paid: 800_00, AmountDue: 0, Status: platform.BillSettled},
	}
	testArrears = api.ArrearsSummary{
		Arrears: platform.Arrears{CustomerID: testCustomer, Total: 133_925_34, LateFees: 1_234_56, OverdueBills: 1, OldestDueDate: "2026-02-20",
			Bills: testBills[:1]},
		Alerts: testMe.Alerts[:1],
	}
	testPayments = api.PaymentList{Items: []platform.Payment{
		{Reference: "GP-7F3A", CustomerID: testCustomer, Amount: 50_000_00, Allocations: []platform.Allocation{{BillID: "B-2026-03", Amount: 50_000_00}},
			Channel: "unionpay", ChannelTxnID: "q1", PaidAt: time.Date(2026, 4, 3, 17, 30, 0, 0, time.UTC), Status: platform.PaymentPosted},
		{Reference: "GP-7F39", CustomerID: testCustomer, Amount: 800_00, Allocations: []platform.Allocation{{BillID: "B-2025-12", Amount: 800_00}},
			Channel: "counter", PaidAt: time.Date(2026, 1, 10, 2, 0, 0, 0, time.UTC), Status: platform.PaymentPosted},
		{Reference: "GP-7F38", CustomerID: testCustomer, Amount: 1_000_00, Prepaid: true,
			Channel: "bank", PaidAt: time.Date(2025, 12, 31, 16, 30, 0, 0, time.UTC), Status: platform.PaymentReversed},
	}}
)

// testLoads is GridPay's record of a load the customer made on another
// computer: this one has no log of it.
var testLoads = api.LoadList{Items: []api.LoadRecord{
	{LoadID: "load-OTHERKEY-3", TokenSerial: "OTHERKEY", Sequence: 3, Amount: 2_000_00, Status: "refunded",
		Reason: "the USB key had not taken the load when its allow expired", Created: time.Date(2026, 4, 2, 1, 0, 0, 0, time.UTC)},
}}

// fakeGateway serves the API over TLS 1.3, asking for a client
// certificate, and records what it saw.
type fakeGateway struct {
	srv *httptest.Server

	mu       sync.Mutex
	conns    int
	requests []string
	peers    []*x509.Certificate // the client certificate of each request
	reports  []api.PINFailureReport
	// fail makes a path answer with this status and error body.
	fail map[string]failure
	// delay is slept before answering.
	delay time.Duration
	// loads, when set, answers the load API.
	loads *loadServer
}

type failure struct {
	status int
	body   api.Error
}

func newFakeGateway(t testing.TB, p *testPKI) *fakeGateway {
	t.Helper()
	g := &fakeGateway{fail: map[string]failure{}}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(g.serve))
	g.srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.serverCert(t)},
		// The real gateway verifies the chain itself to answer refusals
		// with an api.Error; any certificate is let through here.
		ClientAuth: tls.RequireAnyClientCert,
	}
	g.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			g.mu.Lock()
			g.conns++
			g.mu.Unlock()
		}
	}
	g.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	g.srv.StartTLS()
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) connections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conns
}

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	g.requests = append(g.requests, r.Method+" "+r.URL.RequestURI())
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		g.peers = append(g.peers, r.TLS.PeerCertificates[0])
	}
	f, failing := g.fail[r.URL.Path]
	delay, loads := g.delay, g.loads
	g.mu.Unlock()
	time.Sleep(delay)
	if failing {
		writeJSON(w, f.status, api.ErrorBody{Error: f.body})
		return
	}
	if loads != nil && (r.URL.Path == api.PathLoads || r.URL.Path == api.PathLoadReports || r.URL.Path == api.PathCRLs) {
		loads.serve(w, r)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == api.PathPINFailures:
		var rep api.PINFailureReport
		if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
			writeJSON(w, 400, api.ErrorBody{Error: api.Error{Code: api.CodeInvalidRequest, Message: err.Error()}})
			return
		}
		g.mu.Lock()
		g.reports = append(g.reports, rep)
		g.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method != http.MethodGet:
		writeJSON(w, 405, api.ErrorBody{Error: api.Error{Code: api.CodeMethodNotAllowed, Message: "method not allowed"}})
	case r.URL.Path == api.PathMe:
		writeJSON(w, 200, testMe)
	case r.URL.Path == api.PathConsumption:
		writeJSON(w, 200, testConsumption)
	case r.URL.Path == api.PathBills:
		items := []platform.Bill{}
		for _, b := range testBills {
			if r.URL.Query().Get("status") == "all" || b.Status != platform.BillSettled {
				items = append(items, b)
			}
		}
		writeJSON(w, 200, api.BillList{Items: items})
	case strings.HasPrefix(r.URL.Path, api.PathBill):
		id := strings.TrimPrefix(r.URL.Path, api.PathBill)
		for _, b := range testBills {
			if b.ID == id {
				writeJSON(w, 200, b)
				return
			}
		}
		writeJSON(w, 404, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: "no bill " + id + " for this customer", RequestID: "req-404"}})
	case r.URL.Path == api.PathArrears:
		writeJSON(w, 200, testArrears)
	case r.URL.Path == api.PathPayments:
		writeJSON(w, 200, testPayments)
	case r.URL.Path == api.PathLoads:
		writeJSON(w, 200, testLoads)
	default:
		writeJSON(w, 404, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: "no such path"}})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeConfig writes a client configuration file and returns its path.
func writeConfig(t testing.TB, dir string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, "client.yaml")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// result is one run of the client.
type result struct {
	stdout, stderr string
	err            error
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, err %v\nstdout:\n%s\nstderr:\n%s", r.code, r.err, r.stdout, r.stderr)
}

// runApp runs the client in this process with args; tweak adjusts the app
// (its key opener, clock) before it runs.
func runApp(t testing.TB, tweak func(a *app), args ...string) result {
	t.Helper()
	a := newApp()
	a.progress = func(string) interface{ Done(string) } { return noProgress{} }
	if tweak != nil {
		tweak(a)
	}
	var out, errb bytes.Buffer
	a.root.SetOut(&out)
	a.root.SetErr(&errb)
	a.root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := a.root.ExecuteContext(ctx)
	return result{stdout: out.String(), stderr: errb.String(), err: err, code: cli.ExitCode(err)}
}

type noProgress struct{}

func (noProgress) Done(string) {}
