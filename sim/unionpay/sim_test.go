package simunionpay

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/money"
	up "github.com/gridpay/gridpay/unionpay"
)

func TestLuhn(t *testing.T) {
	for _, n := range []string{TestCard, "4111111111111111", "6011000990139424", "378282246310005", "6216 2610 0000 0000 018", "6216-2610-0000-0000-018"} {
		if _, ok := cardNumber(n); !ok {
			t.Errorf("%s refused", n)
		}
	}
	for _, n := range []string{"6216261000000000017", "4111111111111112", "411111111111", "41111111111111111111", "4111x11111111111", ""} {
		if _, ok := cardNumber(n); ok {
			t.Errorf("%s accepted", n)
		}
	}
	if c, _ := cardNumber("6216 2610 0000 0000 018"); c != TestCard {
		t.Errorf("normalised to %s", c)
	}
}

// The simulator writes the file; the client's strict parser must read it.
func TestReconFileRoundTrip(t *testing.T) {
	txns := []Transaction{
		{TxnType: "01", OrderID: "GP20260301000001", TxnTime: "20260301115500", QueryID: "260301115500000000001", Amount: 123456, RespCode: "00"},
		{TxnType: "04", OrderID: "GPR2026030100001", TxnTime: "20260301130000", QueryID: "260301130000000000002", OrigQueryID: "260301115500000000001", Amount: 5000, RespCode: "00"},
		{TxnType: "31", OrderID: "GPC2026030100001", TxnTime: "20260301140000", QueryID: "260301140000000000003", OrigQueryID: "260301120000000000009", Amount: 800, RespCode: "00"},
	}
	content, err := encodeFileContent(reconText("898310048160001", "0301", txns))
	if err != nil {
		t.Fatal(err)
	}
	text, err := up.DecodeFileContent(content)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := up.ParseReconFile(text, "898310048160001", "0301")
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if len(recs) != 3 || recs[1].OrigQueryID != txns[1].OrigQueryID || recs[2].Amount != 800 || recs[0].QueryID != txns[0].QueryID {
		t.Errorf("records %+v", recs)
	}
	if !strings.HasSuffix(string(text), "END|3|123456|5800\n") {
		t.Errorf("trailer:\n%s", text)
	}
	empty, _ := encodeFileContent(reconText("898310048160001", "0301", nil))
	text, _ = up.DecodeFileContent(empty)
	if recs, err := up.ParseReconFile(text, "898310048160001", "0301"); err != nil || len(recs) != 0 {
		t.Errorf("empty file: %v %v", recs, err)
	}
}

func TestSettleDayFor(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, up.Shanghai)
	for mmdd, want := range map[string]string{"0301": "2026-03-01", "0228": "2026-02-28", "0302": "2025-03-02", "1231": "2025-12-31", "0229": "2024-02-29"} {
		if got := settleDayFor(mmdd, now).Format(time.DateOnly); got != want {
			t.Errorf("%s: %s, want %s", mmdd, got, want)
		}
	}
	// 00:30 in Shanghai is still the new day although UTC says yesterday.
	if got := dayOf(time.Date(2026, 3, 1, 16, 30, 0, 0, time.UTC)).Format(time.DateOnly); got != "2026-03-02" {
		t.Errorf("dayOf: %s", got)
	}
}

func TestFaults(t *testing.T) {
	var f Faults
	if err := json.Unmarshal([]byte(`{"delay_notifications":"1.5s","query_unknown":2,"refund_failures":1,"refund_failure_mode":"03"}`), &f); err != nil {
		t.Fatal(err)
	}
	if time.Duration(f.DelayNotifications) != 1500*time.Millisecond || f.QueryUnknown != 2 || f.Validate() != nil {
		t.Errorf("decoded %+v", f)
	}
	b, _ := json.Marshal(f)
	if !bytes.Contains(b, []byte(`"delay_notifications":"1.5s"`)) {
		t.Errorf("encoded %s", b)
	}
	for _, bad := range []Faults{{QueryUnknownCode: "34"}, {RefundFailureMode: "boom"}, {DuplicateNotifications: -1}, {QueryUnknown: -2}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	var s faultState
	s.set(Faults{QueryUnknown: 4})
	var codes []string
	for range 5 {
		if c, ok := s.queryFault(time.Now()); ok {
			codes = append(codes, c)
		}
	}
	if strings.Join(codes, ",") != "03,04,05,03" {
		t.Errorf("codes %v", codes)
	}
	s.set(Faults{QueryUnknownUntil: time.Now().Add(time.Hour), QueryUnknownCode: "04"})
	if c, ok := s.queryFault(time.Now()); !ok || c != "04" {
		t.Errorf("until: %s %v", c, ok)
	}
	if _, ok := s.queryFault(time.Now().Add(2 * time.Hour)); ok {
		t.Error("fault after its end")
	}
	s.set(Faults{RefundFailures: 1})
	if m, ok := s.refundFault(); !ok || m != RefundFailHTTP503 {
		t.Errorf("refund fault %s %v", m, ok)
	}
	if _, ok := s.refundFault(); ok {
		t.Error("refund fault not consumed")
	}
}

func TestRequestDigest(t *testing.T) {
	a := map[string]string{"orderId": "GP20260301000001", "txnAmt": "100", "certId": "1", "signature": "x"}
	b := map[string]string{"orderId": "GP20260301000001", "txnAmt": "100", "certId": "2", "signature": "y"}
	if requestDigest(a) != requestDigest(b) {
		t.Error("the signature or certId changed the digest")
	}
	b["txnAmt"] = "101"
	if requestDigest(a) == requestDigest(b) {
		t.Error("the amount did not change the digest")
	}
}

func TestPKI(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, up.Shanghai)
	p, err := loadOrCreatePKI(dir, DefaultOrganization, now, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{rootKeyFile, gatewayKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", name, fi.Mode(), err)
		}
	}
	roots, err := up.LoadCertPool(p.rootFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("gateway certificate: %v", err)
	}
	if p.cert.Subject.Organization[0] != "China UnionPay" || p.key.N.BitLen() != 2048 {
		t.Errorf("gateway certificate %v, %d bits", p.cert.Subject, p.key.N.BitLen())
	}
	// A second start reuses everything.
	p2, err := loadOrCreatePKI(dir, DefaultOrganization, now, zap.NewNop())
	if err != nil || !p2.cert.Equal(p.cert) || !p2.root.Equal(p.root) {
		t.Errorf("not reused: %v", err)
	}
	// Another organisation: a new gateway certificate under the same root.
	p3, err := loadOrCreatePKI(dir, "UnionPay Test", now, zap.NewNop())
	if err != nil || p3.cert.Equal(p.cert) || !p3.root.Equal(p.root) || p3.cert.Subject.Organization[0] != "UnionPay Test" {
		t.Errorf("organisation change: %v", err)
	}
	// Near its end the gateway certificate is renewed.
	p4, err := loadOrCreatePKI(dir, "UnionPay Test", p3.cert.NotAfter.Add(-time.Hour), zap.NewNop())
	if err != nil || p4.cert.Equal(p3.cert) {
		t.Errorf("renewal: %v", err)
	}
	os.Remove(filepath.Join(dir, rootKeyFile))
	if _, err := loadOrCreatePKI(dir, DefaultOrganization, now, zap.NewNop()); err == nil {
		t.Error("a root without its key was accepted")
	}
}

func TestNewMerchant(t *testing.T) {
	state, out := t.TempDir(), t.TempDir()
	m, err := NewMerchant(state, out, "898310048160001", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := up.LoadKeyFile(m.KeyFile)
	if err != nil {
		t.Fatalf("the key file does not load: %v", err)
	}
	if !m.Cert.PublicKey.(*rsa.PublicKey).Equal(key.Public()) {
		t.Error("certificate and key differ")
	}
	mc, err := LoadMerchantCert(m.CertFile)
	if err != nil || mc.MerchantID != "898310048160001" {
		t.Errorf("by CN: %+v %v", mc, err)
	}
	mc, err = LoadMerchantCert("898310048160009=" + m.CertFile)
	if err != nil || mc.MerchantID != "898310048160009" {
		t.Errorf("explicit: %+v %v", mc, err)
	}
	inDir, err := merchantsInDir(state)
	if err != nil || len(inDir) != 1 || inDir[0].MerchantID != "898310048160001" {
		t.Errorf("state dir: %+v %v", inDir, err)
	}
	if _, err := NewMerchant(state, out, "bad/id", time.Time{}); err == nil {
		t.Error("bad merchant ID accepted")
	}
	if _, err := LoadMerchantCert(filepath.Join(out, "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestPages(t *testing.T) {
	var b bytes.Buffer
	err := pages.ExecuteTemplate(&b, "pay", map[string]any{
		"Amount": money.Fen(123456).Display(), "MerID": "898310048160001", "OrderID": "GP20260301000001",
		"Description": `<script>alert("x")</script>`, "PayTimeout": "2026-03-01 12:30:00", "Action": PathPay + "abc", "Error": "",
	})
	if err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, `<script>alert`) || !strings.Contains(page, "¥1,234.56") || !strings.Contains(page, `name="cardNumber"`) ||
		!strings.Contains(page, `value="approve"`) || !strings.Contains(page, `value="decline"`) {
		t.Errorf("pay page:\n%s", page)
	}
	if strings.Contains(page, "src=") || strings.Contains(page, "https://") {
		t.Errorf("the pay page loads something external:\n%s", page)
	}
}
