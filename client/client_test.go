package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/client/pinlock"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
)

// memFixture is a customer whose key and certificates are in memory,
// talking to a fake gateway.
type memFixture struct {
	pki      *testPKI
	gw       *fakeGateway
	key      *ecdsa.PrivateKey
	leaf     *x509.Certificate
	cfg      string
	stateDir string
	now      time.Time
}

func newMemFixture(t *testing.T) *memFixture {
	t.Helper()
	now := time.Now()
	f := &memFixture{pki: newTestPKI(t, "Test", now.Add(-time.Hour)), key: newECKey(t), now: now}
	f.leaf = f.pki.issueCustomer(t, f.key, testSerial, now.Add(-time.Hour), 365*24*time.Hour)
	f.gw = newFakeGateway(t, f.pki)
	dir := t.TempDir()
	f.stateDir = filepath.Join(dir, "state")
	f.cfg = writeConfig(t, dir,
		"log: {level: error, format: console}",
		"token: {module: /nonexistent/opensc-pkcs11.so}",
		"gateway_url: "+f.gw.srv.URL,
		"ca_file: "+f.pki.rootFile,
		"state_dir: "+f.stateDir,
		"timeout: 5s",
	)
	return f
}

// run runs the client with the in-memory key in place of a USB key.
func (f *memFixture) run(t *testing.T, args ...string) result {
	t.Helper()
	return runApp(t, func(a *app) {
		a.now = func() time.Time { return f.now }
		a.openKey = func(context.Context) (*unlockedKey, error) {
			return &unlockedKey{TokenSerial: testSerial, TokenLabel: "GridPay Key", Leaf: f.leaf, CA: f.pki.customer.Cert, Signer: f.key}, nil
		}
	}, append([]string{"--config", f.cfg}, args...)...)
}

func TestCommandsHuman(t *testing.T) {
	f := newMemFixture(t)
	notAfter := shanghaiTime(f.leaf.NotAfter)
	for _, tc := range []struct {
		args    []string
		want    string
		request string
	}{
		{[]string{"login"}, `Logged in with USB key "GridPay Key" (serial 5A3C0E11D2F4B6A7).

  Customer       华东特钢有限公司
  Customer no.   C1000001
  Type           large industry
  Voltage grade  110kV
  Certificate    valid until ` + notAfter + `

Arrears alerts:
  LEVEL     BILL       MESSAGE
  CRITICAL  B-2026-01  bill 2026-01 is 75 days overdue; supply may be suspended
  INFO      B-2026-03  bill 2026-03 is due on 2026-04-15
`, "GET /v1/me"},
		{[]string{"info"}, `Customer           华东特钢有限公司
Customer no.       C1000001
Account            6222-0001-7788
Type               large industry
Voltage grade      110kV
Contract capacity  31,500 kVA
Contact            Li Wei  021-5555-0101
Address            88 Steelworks Road, Baoshan, Shanghai
Prepaid account    ¥8,800.00 (client load moves it onto the USB key's wallet)

Metering points:
  ID    METER        LOCATION      MULTIPLIER
  MP-1  3301-000123  Substation A       6,000
  MP-2  3301-000124  Substation B       1,200
`, "GET /v1/me"},
		{[]string{"consumption", "--from", "2026-01", "--to", "2026-03"}, `Consumption 2026-01 to 2026-03, kWh, 2 metering point(s)

MONTH         PEAK       FLAT   VALLEY      TOTAL
2026-01    600,000    800,000  600,000  2,000,000  ##############################
2026-02    400,000    500,000  300,000  1,200,000  ##################
2026-03          0          0        0          0
total    1,000,000  1,300,000  900,000  3,200,000
`, "GET /v1/consumption?from=2026-01&to=2026-03"},
		{[]string{"bills"}, `BILL       PERIOD   DUE DATE           ENERGY   AMOUNT DUE  STATUS
B-2026-01  2026-01  2026-02-20  2,000,000 kWh  ¥133,925.34  overdue
B-2026-03  2026-03  2026-04-15          0 kWh   ¥44,500.00  open

2 bill(s), ¥178,425.34 due in total
`, "GET /v1/bills?status=unpaid"},
		{[]string{"bills", "--all", "--from", "2025-12"}, `BILL       PERIOD   DUE DATE           ENERGY   AMOUNT DUE  STATUS
B-2026-01  2026-01  2026-02-20  2,000,000 kWh  ¥133,925.34  overdue
B-2026-03  2026-03  2026-04-15          0 kWh   ¥44,500.00  open
B-2025-12  2025-12  2026-01-20      1,000 kWh        ¥0.00  settled

3 bill(s), ¥178,425.34 due in total
`, "GET /v1/bills?from=2025-12&status=all"},
		{[]string{"bills", "--id", "B-2026-01"}, `Bill      B-2026-01
Period    2026-01
Issued    2026-02-03
Due date  2026-02-20
Status    overdue
Energy    2,000,000 kWh

Energy charge  ¥123,456.78
Basic charge    ¥94,500.00
Late fee         ¥1,234.56
Paid                 ¥0.00
Amount due     ¥133,925.34
`, "GET /v1/bills/B-2026-01"},
		{[]string{"arrears"}, `Arrears          ¥133,925.34
Late fees        ¥1,234.56
Overdue bills    1
Oldest due date  2026-02-20

BILL       PERIOD   DUE DATE     LATE FEE   AMOUNT DUE
B-2026-01  2026-01  2026-02-20  ¥1,234.56  ¥133,925.34

Arrears alerts:
  LEVEL     BILL       MESSAGE
  CRITICAL  B-2026-01  bill 2026-01 is 75 days overdue; supply may be suspended
`, "GET /v1/arrears"},
		{[]string{"history", "--from", "2025-12-01", "--to", "2026-04-30"}, `PAID ON     REFERENCE      AMOUNT  CHANNEL   STATUS    APPLIED TO
2026-04-04  GP-7F3A    ¥50,000.00  unionpay  posted    B-2026-03
2026-01-10  GP-7F39       ¥800.00  counter   posted    B-2025-12
2026-01-01  GP-7F38     ¥1,000.00  bank      reversed  prepaid account

3 payment(s), ¥50,800.00 received (reversed payments not counted)

Loads onto USB keys (圈存):
STARTED           LOAD                AMOUNT  STATUS    NOTE
2026-04-02 09:00  load-OTHERKEY-3  ¥2,000.00  refunded  the USB key had not taken the load when its allow expired
`, "GET /v1/payments?from=2025-12-01&to=2026-04-30, GET /v1/loads"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			f.gw.mu.Lock()
			f.gw.requests = nil
			f.gw.mu.Unlock()
			r := f.run(t, tc.args...)
			if r.err != nil {
				t.Fatal(r)
			}
			if r.stdout != tc.want {
				t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, tc.want)
			}
			f.gw.mu.Lock()
			defer f.gw.mu.Unlock()
			if strings.Join(f.gw.requests, ", ") != tc.request {
				t.Errorf("gateway saw %q, want [%s]", f.gw.requests, tc.request)
			}
			// The gateway was shown the key's certificate.
			if len(f.gw.peers) == 0 || !f.gw.peers[len(f.gw.peers)-1].Equal(f.leaf) {
				t.Error("the gateway did not receive the key's certificate")
			}
		})
	}
}

func TestCommandsJSON(t *testing.T) {
	f := newMemFixture(t)
	for _, tc := range []struct {
		args []string
		got  any
		want any
	}{
		{[]string{"info"}, &infoOutput{}, &infoOutput{Customer: testMe.Customer, MeteringPoints: testMe.MeteringPoints, Prepaid: testMe.Prepaid}},
		{[]string{"consumption"}, &api.ConsumptionList{}, &testConsumption},
		{[]string{"bills", "--all"}, &api.BillList{}, &api.BillList{Items: testBills}},
		{[]string{"bills", "--id", "B-2026-03"}, &platform.Bill{}, &testBills[1]},
		{[]string{"arrears"}, &api.ArrearsSummary{}, &testArrears},
		{[]string{"history"}, &history{}, &history{PaymentList: testPayments, Loads: testLoads.Items}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := f.run(t, append(tc.args, "--json")...)
			if r.err != nil {
				t.Fatal(r)
			}
			dec := json.NewDecoder(strings.NewReader(r.stdout))
			dec.DisallowUnknownFields()
			if err := dec.Decode(tc.got); err != nil {
				t.Fatalf("stdout is not the expected JSON: %v\n%s", err, r.stdout)
			}
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("JSON round trip:\n got %+v\nwant %+v", tc.got, tc.want)
			}
		})
	}

	t.Run("login", func(t *testing.T) {
		r := f.run(t, "login", "--json")
		if r.err != nil {
			t.Fatal(r)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		if got := strings.Join(sortedStrings(keys), ","); got != "alerts,certificate,customer,token" {
			t.Fatalf("login JSON keys %s", got)
		}
		var out loginOutput
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatal(err)
		}
		want := loginOutput{
			Customer: testMe.Customer,
			Token:    tokenView{Serial: testSerial, Label: "GridPay Key"},
			Certificate: certView{Serial: pki.SerialHex(f.leaf.SerialNumber), CustomerID: testCustomer, TokenSerial: testSerial,
				NotBefore: f.leaf.NotBefore.UTC(), NotAfter: f.leaf.NotAfter.UTC()},
			Alerts: testMe.Alerts,
		}
		if !reflect.DeepEqual(out, want) {
			t.Fatalf("login JSON:\n got %+v\nwant %+v", out, want)
		}
	})
}

func sortedStrings(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}

func TestExitCodeOfEveryAPIErrorCode(t *testing.T) {
	want := map[string]int{
		api.CodeNoCertificate:      cli.ExitAuth,
		api.CodeUnknownCA:          cli.ExitAuth,
		api.CodeCertExpired:        cli.ExitAuth,
		api.CodeCertRevoked:        cli.ExitAuth,
		api.CodeCertInvalid:        cli.ExitAuth,
		api.CodeNotBound:           cli.ExitAuth,
		api.CodeRateLimited:        cli.ExitUnavailable,
		api.CodeNotFound:           cli.ExitNotFound,
		api.CodeInvalidRequest:     cli.ExitUsage,
		api.CodePayloadTooLarge:    cli.ExitError,
		api.CodeUnavailable:        cli.ExitUnavailable,
		api.CodeInternal:           cli.ExitError,
		api.CodeMethodNotAllowed:   cli.ExitError,
		api.CodeUnsupportedVersion: cli.ExitError,
	}
	// Every code api.go declares is in the table (the list is read from the
	// source, so a new code without a mapping fails here).
	src, err := os.ReadFile("../api/api.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "Code") || !strings.Contains(line, "= \"") {
			continue
		}
		code := strings.Split(strings.SplitN(line, `"`, 2)[1], `"`)[0]
		if _, ok := want[code]; !ok {
			t.Errorf("api code %q has no expected exit code in this test", code)
		}
	}

	f := newMemFixture(t)
	for code, exit := range want {
		t.Run(code, func(t *testing.T) {
			if got := exitCodeFor(code, 400); got != exit {
				t.Fatalf("exitCodeFor(%q) = %d, want %d", code, got, exit)
			}
			msg := "the gateway says " + code
			f.gw.mu.Lock()
			f.gw.fail[api.PathMe] = failure{status: 403, body: api.Error{Code: code, Message: msg, RequestID: "r-1"}}
			f.gw.mu.Unlock()
			r := f.run(t, "info")
			if r.code != exit {
				t.Fatalf("exit %d, want %d\n%s", r.code, exit, r)
			}
			if want := msg + " (" + code + ", request r-1)"; r.err.Error() != want {
				t.Fatalf("message %q, want %q", r.err, want)
			}
			if r.stdout != "" {
				t.Fatalf("stdout not empty on error: %q", r.stdout)
			}
		})
	}
	f.gw.mu.Lock()
	delete(f.gw.fail, api.PathMe)
	f.gw.mu.Unlock()

	// Without a code, the HTTP status decides.
	for status, exit := range map[int]int{401: cli.ExitAuth, 403: cli.ExitAuth, 404: cli.ExitNotFound, 429: cli.ExitUnavailable,
		502: cli.ExitUnavailable, 503: cli.ExitUnavailable, 504: cli.ExitUnavailable, 400: cli.ExitUsage, 500: cli.ExitError, 418: cli.ExitError} {
		if got := exitCodeFor("", status); got != exit {
			t.Errorf("status %d: exit %d, want %d", status, got, exit)
		}
		if got := exitCodeFor("some_future_code", status); got != exit {
			t.Errorf("unknown code, status %d: exit %d, want %d", status, got, exit)
		}
	}
	// A non-JSON error body.
	err = decodeError(502, "", []byte("<html>Bad Gateway</html>"))
	if cli.ExitCode(err) != cli.ExitUnavailable || !strings.Contains(err.Error(), "Bad Gateway") {
		t.Fatalf("HTML 502: %v (exit %d)", err, cli.ExitCode(err))
	}
}

func TestBillNotFound(t *testing.T) {
	f := newMemFixture(t)
	r := f.run(t, "bills", "--id", "B-OTHER/../1")
	if r.code != cli.ExitNotFound {
		t.Fatal(r)
	}
	if !strings.Contains(r.err.Error(), "no bill B-OTHER/../1 for this customer (not_found, request req-404)") {
		t.Fatalf("message: %v", r.err)
	}
	f.gw.mu.Lock()
	defer f.gw.mu.Unlock()
	// The ID is one path segment, escaped.
	if got := f.gw.requests[len(f.gw.requests)-1]; got != "GET /v1/bills/B-OTHER%2F..%2F1" {
		t.Fatalf("request %q", got)
	}
}

func TestPINFailuresReportedOnce(t *testing.T) {
	f := newMemFixture(t)
	local, err := pinlock.OpenLocal(f.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	at := f.now.Add(-time.Minute).UTC().Truncate(time.Second)
	for i := 1; i <= 2; i++ {
		if _, err := local.RecordFailure(testSerial, i, false, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := local.RecordFailure("OTHERKEY", 1, false, at); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := f.run(t, "login"); r.err != nil {
			t.Fatal(r)
		}
	}
	f.gw.mu.Lock()
	reports, requests := f.gw.reports, f.gw.requests
	f.gw.mu.Unlock()
	if len(reports) != 1 {
		t.Fatalf("%d reports, want 1: %+v", len(reports), reports)
	}
	host, _ := os.Hostname()
	want := []api.PINFailure{{At: at, Count: 1, Hostname: host}, {At: at, Count: 2, Hostname: host}}
	if !reflect.DeepEqual(reports[0].Failures, want) {
		t.Fatalf("report %+v, want %+v", reports[0].Failures, want)
	}
	if requests[0] != "POST /v1/events/pin-failures" || requests[1] != "GET /v1/me" {
		t.Fatalf("requests %q: the report must come first", requests)
	}
	if un, _ := local.Unreported(testSerial); len(un) != 0 {
		t.Fatalf("still unreported: %+v", un)
	}
	if un, _ := local.Unreported("OTHERKEY"); len(un) != 1 {
		t.Fatalf("another key's failure was reported with this one: %+v", un)
	}
	// One handshake (one signature by the key) served the report and the query.
	if f.gw.connections() != 2 {
		t.Fatalf("%d connections for two runs", f.gw.connections())
	}
}

func TestPINFailuresKeptWhenReportFails(t *testing.T) {
	f := newMemFixture(t)
	local, err := pinlock.OpenLocal(f.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := local.RecordFailure(testSerial, 1, false, f.now); err != nil {
		t.Fatal(err)
	}
	f.gw.fail[api.PathPINFailures] = failure{status: 503, body: api.Error{Code: api.CodeUnavailable, Message: "audit log down"}}
	if r := f.run(t, "login"); r.err != nil {
		t.Fatalf("a failed report must not fail the command: %v", r)
	}
	if un, _ := local.Unreported(testSerial); len(un) != 1 {
		t.Fatalf("a failure whose report failed was marked reported: %+v", un)
	}
	delete(f.gw.fail, api.PathPINFailures)
	if r := f.run(t, "login"); r.err != nil {
		t.Fatal(r)
	}
	if un, _ := local.Unreported(testSerial); len(un) != 0 || len(f.gw.reports) != 1 {
		t.Fatalf("second run: unreported %+v, reports %d", un, len(f.gw.reports))
	}
}

func TestCertificateCheckedBeforeConnecting(t *testing.T) {
	f := newMemFixture(t)
	for _, tc := range []struct {
		name string
		now  time.Time
		want string
	}{
		{"expired", f.leaf.NotAfter.Add(time.Hour), "the certificate on your USB key expired on " + shanghaiTime(f.leaf.NotAfter) + "; ask the power company for a new one"},
		{"not yet valid", f.leaf.NotBefore.Add(-time.Hour), "the certificate on your USB key is not valid before " + shanghaiTime(f.leaf.NotBefore) + "; check this computer's date and time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.now = tc.now
			r := f.run(t, "login")
			if r.code != cli.ExitAuth || r.err.Error() != tc.want {
				t.Fatalf("got %v, want exit 4 %q", r, tc.want)
			}
			if n := f.gw.connections(); n != 0 {
				t.Fatalf("%d connections to the gateway; the certificate must be refused before connecting", n)
			}
		})
	}

	t.Run("expiring soon warns", func(t *testing.T) {
		f.now = f.leaf.NotAfter.Add(-10*24*time.Hour - time.Hour)
		r := f.run(t, "login")
		if r.err != nil {
			t.Fatal(r)
		}
		if !strings.Contains(r.stderr, "warning: the certificate on your USB key expires on "+shanghaiTime(f.leaf.NotAfter)+" (in 10 days)") {
			t.Fatalf("no expiry warning on stderr:\n%s", r.stderr)
		}
		if strings.Contains(r.stdout, "warning") {
			t.Fatal("warning written to stdout")
		}
	})
	f.now = time.Now()

	t.Run("another root", func(t *testing.T) {
		other := newTestPKI(t, "Other", f.now.Add(-time.Hour))
		k := newECKey(t)
		leaf := other.issueCustomer(t, k, testSerial, f.now.Add(-time.Hour), 0)
		before := f.gw.connections()
		r := runApp(t, func(a *app) {
			a.openKey = func(context.Context) (*unlockedKey, error) {
				return &unlockedKey{TokenSerial: testSerial, Leaf: leaf, CA: other.customer.Cert, Signer: k}, nil
			}
		}, "--config", f.cfg, "login")
		if r.code != cli.ExitAuth || !strings.Contains(r.err.Error(), "the certificate on your USB key is not one of GridPay's") {
			t.Fatal(r)
		}
		if f.gw.connections() != before {
			t.Fatal("connected with a certificate of another root")
		}
	})

	t.Run("certificate of another key", func(t *testing.T) {
		r := runApp(t, func(a *app) {
			a.openKey = func(context.Context) (*unlockedKey, error) {
				return &unlockedKey{TokenSerial: testSerial, Leaf: f.leaf, CA: f.pki.customer.Cert, Signer: newECKey(t)}, nil
			}
		}, "--config", f.cfg, "login")
		if r.code != cli.ExitAuth || !strings.Contains(r.err.Error(), "does not belong to its key") {
			t.Fatal(r)
		}
	})

	t.Run("certificate issued for another token", func(t *testing.T) {
		r := runApp(t, func(a *app) {
			a.openKey = func(context.Context) (*unlockedKey, error) {
				return &unlockedKey{TokenSerial: "0000111122223333", Leaf: f.leaf, CA: f.pki.customer.Cert, Signer: f.key}, nil
			}
		}, "--config", f.cfg, "login")
		if r.code != cli.ExitAuth || !strings.Contains(r.err.Error(), "was issued for another key (serial 5A3C0E11D2F4B6A7)") {
			t.Fatal(r)
		}
	})

	t.Run("no customer CA on the key", func(t *testing.T) {
		r := runApp(t, func(a *app) {
			a.openKey = func(context.Context) (*unlockedKey, error) {
				return &unlockedKey{TokenSerial: testSerial, Leaf: f.leaf, Signer: f.key}, nil
			}
		}, "--config", f.cfg, "login")
		if r.code != cli.ExitAuth || !strings.Contains(r.err.Error(), "the key holds no customer CA certificate") {
			t.Fatal(r)
		}
	})
}

func TestGatewayTransportFailures(t *testing.T) {
	f := newMemFixture(t)
	cfgFor := func(t *testing.T, url, timeout string) string {
		return writeConfig(t, t.TempDir(),
			"log: {level: error, format: console}",
			"gateway_url: "+url,
			"ca_file: "+f.pki.rootFile,
			"state_dir: "+f.stateDir,
			"timeout: "+timeout,
		)
	}
	run := func(t *testing.T, cfg string) result {
		return runApp(t, func(a *app) {
			a.openKey = func(context.Context) (*unlockedKey, error) {
				return &unlockedKey{TokenSerial: testSerial, Leaf: f.leaf, CA: f.pki.customer.Cert, Signer: f.key}, nil
			}
		}, "--config", cfg, "login")
	}

	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		r := run(t, cfgFor(t, "https://"+addr, "5s"))
		if r.code != cli.ExitUnavailable || !strings.Contains(r.err.Error(), "cannot reach the gateway at "+addr) {
			t.Fatal(r)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		f.gw.mu.Lock()
		f.gw.delay = 2 * time.Second
		f.gw.mu.Unlock()
		defer func() { f.gw.mu.Lock(); f.gw.delay = 0; f.gw.mu.Unlock() }()
		t0 := time.Now()
		r := run(t, cfgFor(t, f.gw.srv.URL, "300ms"))
		if r.code != cli.ExitUnavailable || !strings.Contains(r.err.Error(), "did not answer in time (timeout 300ms)") {
			t.Fatal(r)
		}
		if time.Since(t0) > 1500*time.Millisecond {
			t.Fatalf("the timeout took %s", time.Since(t0))
		}
	})

	t.Run("gateway certificate not from GridPay", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		defer srv.Close()
		r := run(t, cfgFor(t, srv.URL, "5s"))
		if r.code != cli.ExitAuth || !strings.Contains(r.err.Error(), "could not be authenticated") {
			t.Fatal(r)
		}
	})

	t.Run("gateway refuses the certificate in the handshake", func(t *testing.T) {
		other := newTestPKI(t, "Other", time.Now().Add(-time.Hour))
		pool := x509.NewCertPool()
		pool.AddCert(other.customer.Cert)
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.pki.serverCert(t)}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
		srv.StartTLS()
		defer srv.Close()
		r := run(t, cfgFor(t, srv.URL, "5s"))
		if r.code != cli.ExitAuth || !strings.Contains(r.err.Error(), "refused this USB key's certificate during the TLS handshake") {
			t.Fatal(r)
		}
	})

	t.Run("TLS 1.2 gateway refused", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.pki.serverCert(t)}, MaxVersion: tls.VersionTLS12}
		srv.StartTLS()
		defer srv.Close()
		r := run(t, cfgFor(t, srv.URL, "5s"))
		if r.code == 0 || !strings.Contains(r.err.Error(), "protocol version") {
			t.Fatal(r)
		}
	})
}

func TestUsageErrorsNeedNoKey(t *testing.T) {
	f := newMemFixture(t)
	for _, args := range [][]string{
		{"consumption", "--from", "2026-13"},
		{"consumption", "--from", "2026-05", "--to", "2026-01"},
		{"consumption", "--from", "2020-01", "--to", "2026-01"},
		{"bills", "--id", "B1", "--all"},
		{"history", "--from", "2026-02-30"},
		{"history", "--from", "2026-03-02", "--to", "2026-03-01"},
		{"login", "extra"},
		{"bills", "--nope"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			opened := false
			r := runApp(t, func(a *app) {
				a.openKey = func(context.Context) (*unlockedKey, error) { opened = true; return nil, errors.New("not reached") }
			}, append([]string{"--config", f.cfg}, args...)...)
			if r.code != cli.ExitUsage {
				t.Fatal(r)
			}
			if opened {
				t.Fatal("the key was opened for a usage error")
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, lines := range map[string][]string{
		"unknown key":     {"gateway_urll: https://x"},
		"http gateway":    {"gateway_url: http://127.0.0.1:1"},
		"inline PIN":      {"token: {pin: '123456'}"},
		"missing ca_file": {"ca_file: " + filepath.Join(dir, "nope.pem"), "state_dir: " + dir},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := writeConfig(t, t.TempDir(), lines...)
			opened := false
			r := runApp(t, func(a *app) {
				a.openKey = func(context.Context) (*unlockedKey, error) { opened = true; return nil, errors.New("not reached") }
			}, "--config", cfg, "login")
			if r.code != cli.ExitConfig || opened {
				t.Fatalf("opened=%v %v", opened, r)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	r := runApp(t, nil, "--help")
	if r.err != nil {
		t.Fatal(r)
	}
	for _, want := range []string{"login", "consumption", "--allow-final-try", "--token-serial", "--json", "Exit codes:", "4  authentication failed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	r = runApp(t, nil, "login", "--help")
	if r.err != nil || !strings.Contains(r.stdout, "Exit codes:") || !strings.Contains(r.stdout, "--token-serial") {
		t.Fatalf("login --help:\n%s", r.stdout)
	}
}

func TestTableWidths(t *testing.T) {
	if displayWidth("华东特钢") != 8 || displayWidth("abc") != 3 || displayWidth("¥1,234.56") != 9 {
		t.Fatal("displayWidth")
	}
	if groupDigits(1234567) != "1,234,567" || groupDigits(-1000) != "-1,000" || groupDigits(12) != "12" {
		t.Fatal("groupDigits")
	}
	if bar(1, 1000) != "#" || bar(1000, 1000) != strings.Repeat("#", barWidth) || bar(0, 10) != "" {
		t.Fatal("bar")
	}
}

func TestTokenFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ti         hsm.TokenInfo
		allowFinal bool
		counted    bool
		wantErr    string
		wantWarn   string
	}{
		{name: "clean"},
		{name: "locked by the key", ti: hsm.TokenInfo{UserPINLocked: true},
			wantErr: "the USB key is locked: too many wrong PINs were entered; ask the power company to reset it"},
		{name: "final try refused", ti: hsm.TokenInfo{UserPINFinalTry: true, UserPINCountLow: true},
			wantErr: "one try left: a wrong PIN will lock the key. Run again with --allow-final-try if you are sure of the PIN"},
		{name: "final try allowed", ti: hsm.TokenInfo{UserPINFinalTry: true}, allowFinal: true,
			wantWarn: "warning: one try left: a wrong PIN will lock the key\n"},
		{name: "count low", ti: hsm.TokenInfo{UserPINCountLow: true}, wantWarn: "warning: a wrong PIN was entered before on this key\n"},
		{name: "count low, already counted", ti: hsm.TokenInfo{UserPINCountLow: true}, counted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errb strings.Builder
			a := &app{stderr: &errb, allowFinalTry: tc.allowFinal}
			err := a.checkTokenFlags(tc.ti, tc.counted)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if err != nil && cli.ExitCode(err) != cli.ExitAuth {
				t.Fatalf("exit code %d", cli.ExitCode(err))
			}
			if errb.String() != tc.wantWarn {
				t.Fatalf("stderr %q, want %q", errb.String(), tc.wantWarn)
			}
		})
	}
}

func TestBillDetailWithPayment(t *testing.T) {
	f := newMemFixture(t)
	r := f.run(t, "bills", "--id", "B-2026-03")
	if r.err != nil {
		t.Fatal(r)
	}
	want := `Energy charge        ¥0.00
Basic charge    ¥94,500.00
Late fee             ¥0.00
Paid           -¥50,000.00
Amount due      ¥44,500.00
`
	if !strings.HasSuffix(r.stdout, want) {
		t.Fatalf("stdout:\n%s\nwant suffix:\n%s", r.stdout, want)
	}
}
