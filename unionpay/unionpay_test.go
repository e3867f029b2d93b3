package unionpay

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridpay/gridpay/money"
)

// goldenFields is a fixed consume request. Its signing string, digest and
// signature with testdata/merchant-key.pem must never change: the gateway
// computes the same.
var goldenFields = map[string]string{
	"version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "txnType": "01", "txnSubType": "01",
	"bizType": "000201", "channelType": "07", "accessType": "0", "merId": testMerchantID,
	"orderId": "GP20260301000001", "txnTime": "20260301115500", "txnAmt": "123456", "currencyCode": "156",
	"frontUrl": "https://pay.gridpay.example/return", "backUrl": "https://notify.gridpay.example/unionpay",
	"payTimeout": "20260301122500", "orderDesc": "电费 2026-02", "certId": "69042905377",
	"signature": "ignored: never part of the signing string",
}

const goldenSigningString = "accessType=0&backUrl=https://notify.gridpay.example/unionpay&bizType=000201&certId=69042905377" +
	"&channelType=07&currencyCode=156&encoding=UTF-8&frontUrl=https://pay.gridpay.example/return&merId=898310048160001" +
	"&orderDesc=电费 2026-02&orderId=GP20260301000001&payTimeout=20260301122500&signMethod=01&txnAmt=123456" +
	"&txnSubType=01&txnTime=20260301115500&txnType=01&version=5.1.0"

// Checked independently with:
//
//	printf '%s' "$signingString" | sha256sum
//	printf '%s' "$digest" | openssl dgst -sha256 -sign testdata/merchant-key.pem | base64 -w0
const goldenDigest = "42de85791262847822907a40e11da2485667f185461dd24641904d3517ad51ec"

const goldenSignature = "QUEbT24Ptt7ALHUOF0AUIhaKJcOT2ztDftAlapLvQvDOebMwhj0WLeThtvFYb5niYufeqDqCCKh9cNb0E3hMy/q/JZRQfvQPY/pv33aw8whZLIH2uNAlmb1BM+aHPMq3AFVr/vISbowipi9SaE0US7jBbO92RcpSrzqM8s7d70y4UgXz7yNbLPiuT6U+Ugxbnp21q9B7wCV6uEs6S+NXxug/GxOfx51cBzyNtbcZY6tJsTNj2wJxQ7GJ0HEmXUcfi73NwsFWXjMV02VRCDZrsrmKLRGG5flSzNcNYnZlp5s0AdSCNbh4im6Td/xYO0yhPmZY7xcHOPhjzgKAC4i7aQ=="

func TestGoldenSignature(t *testing.T) {
	p := loadTestPKI(t)
	if got := SigningString(goldenFields); got != goldenSigningString {
		t.Errorf("signing string\n got %s\nwant %s", got, goldenSigningString)
	}
	if got := Digest(goldenFields); got != goldenDigest {
		t.Errorf("digest %s, want %s", got, goldenDigest)
	}
	sig, err := Sign(context.Background(), p.merchantKey, goldenFields)
	if err != nil {
		t.Fatal(err)
	}
	if sig != goldenSignature {
		t.Errorf("signature\n got %s\nwant %s", sig, goldenSignature)
	}
	if CertID(p.merchantCert) != goldenFields["certId"] {
		t.Errorf("certId %s, want %s", CertID(p.merchantCert), goldenFields["certId"])
	}
}

func TestSignVerify(t *testing.T) {
	p := loadTestPKI(t)
	f := sampleNotification()
	sig, err := Sign(context.Background(), p.gatewayKey, f)
	if err != nil {
		t.Fatal(err)
	}
	f[FieldSignature] = sig
	if err := Verify(&p.gatewayKey.PublicKey, f); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if err := Verify(&p.merchantKey.PublicKey, f); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other key: %v, want ErrBadSignature", err)
	}
	for name, change := range map[string]func(map[string]string){
		"tampered amount": func(m map[string]string) { m[FieldTxnAmt] = "123457" },
		"removed field":   func(m map[string]string) { delete(m, FieldTraceNo) },
		"added field":     func(m map[string]string) { m["reserved"] = "x" },
		"bad base64":      func(m map[string]string) { m[FieldSignature] = "***" },
		"no signature":    func(m map[string]string) { delete(m, FieldSignature) },
		"renamed field":   func(m map[string]string) { m["TxnAmt"] = m[FieldTxnAmt]; delete(m, FieldTxnAmt) },
	} {
		m := map[string]string{}
		for k, v := range f {
			m[k] = v
		}
		change(m)
		if err := Verify(&p.gatewayKey.PublicKey, m); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
}

func TestSignRefusesNonRSA(t *testing.T) {
	if _, err := Sign(context.Background(), ed25519Signer(t), map[string]string{"a": "b"}); err == nil {
		t.Fatal("an Ed25519 key signed")
	}
}

func TestClassify(t *testing.T) {
	for code, want := range map[string]Outcome{
		"00": Succeeded, "03": Unknown, "04": Unknown, "05": Unknown, "34": Unknown, "": Unknown,
		"01": Failed, "12": Failed, "35": Failed, "39": Failed, "60": Failed, "61": Failed, "99": Failed, "A6": Failed,
	} {
		if got := Classify(code); got != want {
			t.Errorf("Classify(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestNewClientChecks(t *testing.T) {
	p := loadTestPKI(t)
	good := newTestClient(t, p, "https://gw.example").cfg
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, change := range map[string]func(*Config){
		"no merchant":   func(c *Config) { c.MerchantID = "" },
		"bad merchant":  func(c *Config) { c.MerchantID = "89831/0048" },
		"no query URL":  func(c *Config) { c.QueryURL = "" },
		"relative URL":  func(c *Config) { c.BackURL = "/gateway/api/backTransReq.do" },
		"ftp URL":       func(c *Config) { c.FileURL = "ftp://gw.example/file" },
		"no signer":     func(c *Config) { c.Signer = nil },
		"no cert":       func(c *Config) { c.SignCert = nil },
		"cert mismatch": func(c *Config) { c.Signer = other },
		"no roots":      func(c *Config) { c.Roots = nil },
	} {
		cfg := good
		change(&cfg)
		if _, err := NewClient(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadKeyFile(t *testing.T) {
	p := loadTestPKI(t)
	dir := t.TempDir()
	pkcs8, _ := os.ReadFile("testdata/merchant-key.pem")
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(p.merchantKey)})
	for name, data := range map[string][]byte{"pkcs8.pem": pkcs8, "pkcs1.pem": pkcs1} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, data, 0o600)
		k, err := LoadKeyFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !k.Public().(*rsa.PublicKey).Equal(&p.merchantKey.PublicKey) {
			t.Errorf("%s: another key", name)
		}
	}
	open := filepath.Join(dir, "open.pem")
	os.WriteFile(open, pkcs8, 0o644)
	if _, err := LoadKeyFile(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group/world-readable key: %v", err)
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, _ := x509.MarshalPKCS8PrivateKey(small)
	weak := filepath.Join(dir, "weak.pem")
	os.WriteFile(weak, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if _, err := LoadKeyFile(weak); err == nil {
		t.Error("1024-bit key accepted")
	}
	certFile := filepath.Join(dir, "cert.pem")
	os.WriteFile(certFile, []byte(p.rootPEM), 0o600)
	if _, err := LoadKeyFile(certFile); err == nil {
		t.Error("a certificate accepted as a key")
	}
	if err := func() error { _, err := LoadKeyFile(filepath.Join(dir, "missing.pem")); return err }(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if c, err := LoadCertificateFile("testdata/root.pem"); err != nil || !c.Equal(p.root) {
		t.Errorf("LoadCertificateFile: %v", err)
	}
}

func testOrder() Order {
	return Order{
		OrderID: "GP20260301000001", TxnTime: testNow, Amount: 123456, PayTimeout: testNow.Add(30 * time.Minute),
		FrontURL: "https://pay.gridpay.example/return", BackURL: "https://notify.gridpay.example/unionpay",
		Description: "电费 2026-02",
	}
}

func TestConsumeForm(t *testing.T) {
	p := loadTestPKI(t)
	c := newTestClient(t, p, "https://gw.example")
	f, err := c.ConsumeForm(testOrder())
	if err != nil {
		t.Fatal(err)
	}
	if f.Action != "https://gw.example/gateway/api/frontTransReq.do" {
		t.Errorf("action %s", f.Action)
	}
	want := map[string]string{
		"version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "txnType": "01", "txnSubType": "01",
		"bizType": "000201", "channelType": "07", "accessType": "0", "merId": testMerchantID, "currencyCode": "156",
		"orderId": "GP20260301000001", "txnTime": "20260301120000", "txnAmt": "123456", "payTimeout": "20260301123000",
		"certId": "69042905377", "orderDesc": "电费 2026-02",
	}
	for k, v := range want {
		if f.Fields[k] != v {
			t.Errorf("%s = %q, want %q", k, f.Fields[k], v)
		}
	}
	if err := Verify(&p.merchantKey.PublicKey, f.Fields); err != nil {
		t.Errorf("the form's signature: %v", err)
	}
	// txnTime is Shanghai time whatever the zone of the given instant.
	o := testOrder()
	o.TxnTime = testNow.UTC()
	if f, _ := c.ConsumeForm(o); f.Fields[FieldTxnTime] != "20260301120000" {
		t.Errorf("txnTime from UTC: %s", f.Fields[FieldTxnTime])
	}

	for name, change := range map[string]func(*Order){
		"short order ID":       func(o *Order) { o.OrderID = "GP2026" },
		"long order ID":        func(o *Order) { o.OrderID = strings.Repeat("A", 33) },
		"order ID with dash":   func(o *Order) { o.OrderID = "GP-20260301-01" },
		"zero amount":          func(o *Order) { o.Amount = 0 },
		"negative amount":      func(o *Order) { o.Amount = -5 },
		"over Max":             func(o *Order) { o.Amount = money.Max + 1 },
		"timeout before txn":   func(o *Order) { o.PayTimeout = o.TxnTime.Add(-time.Minute) },
		"timeout equal":        func(o *Order) { o.PayTimeout = o.TxnTime.Add(500 * time.Millisecond) },
		"no txnTime":           func(o *Order) { o.TxnTime = time.Time{} },
		"no backUrl":           func(o *Order) { o.BackURL = "" },
		"javascript frontUrl":  func(o *Order) { o.FrontURL = "javascript:alert(1)" },
		"description too long": func(o *Order) { o.Description = strings.Repeat("电", 65) },
		"control character":    func(o *Order) { o.Description = "a\nb" },
	} {
		o := testOrder()
		change(&o)
		if _, err := c.ConsumeForm(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	o = testOrder()
	o.Amount = money.Max
	if _, err := c.ConsumeForm(o); err != nil {
		t.Errorf("money.Max refused: %v", err)
	}
}

func TestFormHTML(t *testing.T) {
	f := Form{Action: "https://gw.example/gateway/api/frontTransReq.do?a=1&b=2", Fields: map[string]string{
		"orderDesc": `"><script>alert(1)</script>`, "txnAmt": "100", "x&y": "<b>",
	}}
	page := string(f.HTML())
	for _, bad := range []string{"<script>alert", `"><`, "<b>", "x&y"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q unescaped:\n%s", bad, page)
		}
	}
	for _, good := range []string{
		`action="https://gw.example/gateway/api/frontTransReq.do?a=1&amp;b=2"`,
		`name="txnAmt" value="100"`,
		`value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`,
		`method="post"`, "<noscript>",
	} {
		if !strings.Contains(page, good) {
			t.Errorf("page lacks %q:\n%s", good, page)
		}
	}
	if strings.Contains(page, "src=") || strings.Contains(page, "http://") {
		t.Errorf("page loads something external:\n%s", page)
	}
	// Fields come in name order: the page is stable.
	if i, j := strings.Index(page, `name="orderDesc"`), strings.Index(page, `name="txnAmt"`); i < 0 || j < i {
		t.Error("fields out of order")
	}
	evil := string(Form{Action: "javascript:alert(1)"}.HTML())
	if strings.Contains(evil, "javascript:") {
		t.Errorf("javascript action kept:\n%s", evil)
	}
}

func TestGatewayCertificate(t *testing.T) {
	p := loadTestPKI(t)
	c := newTestClient(t, p, "https://gw.example")
	for name, certPEM := range map[string]string{
		"other root":         p.otherGatewayPEM,
		"expired":            p.expiredPEM,
		"wrong organisation": p.wrongOrgPEM,
		"the root itself":    p.rootPEM,
		"garbage":            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"not PEM":            "MIIB...",
	} {
		f := gatewaySign(t, p, certPEM, sampleNotification())
		if _, err := c.ParseNotification(toValues(f)); !errors.Is(err, ErrBadCertificate) {
			t.Errorf("%s: %v, want ErrBadCertificate", name, err)
		}
	}
	// The gateway certificate of the other root, presented together with
	// that root as an "intermediate", must still be refused: trust comes
	// from the configured roots only.
	f := gatewaySign(t, p, p.otherGatewayPEM+string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.otherRoot.Raw})), sampleNotification())
	if _, err := c.ParseNotification(toValues(f)); !errors.Is(err, ErrBadCertificate) {
		t.Errorf("other root presented as intermediate: %v", err)
	}
	// A cached certificate is still checked for validity at each use.
	cfg := c.cfg
	now := testNow
	cfg.Now = func() time.Time { return now }
	c2, _ := NewClient(cfg)
	f = gatewaySign(t, p, p.gatewayPEM, sampleNotification())
	if _, err := c2.ParseNotification(toValues(f)); err != nil {
		t.Fatal(err)
	}
	now = time.Date(2035, 6, 1, 0, 0, 0, 0, time.UTC)
	if _, err := c2.ParseNotification(toValues(f)); !errors.Is(err, ErrBadCertificate) {
		t.Errorf("after expiry, cached: %v", err)
	}
}

func TestParseNotification(t *testing.T) {
	p := loadTestPKI(t)
	c := newTestClient(t, p, "https://gw.example")
	n, err := c.ParseNotification(toValues(gatewaySign(t, p, p.gatewayPEM, sampleNotification())))
	if err != nil {
		t.Fatal(err)
	}
	want := Notification{TxnType: "01", OrderID: "GP20260301000001", TxnTime: time.Date(2026, 3, 1, 11, 55, 0, 0, Shanghai),
		QueryID: "782603011155001234567", RespCode: "00", RespMsg: "成功[0000000]", Amount: 123456, SettleDate: "0301", Outcome: Succeeded}
	if !n.TxnTime.Equal(want.TxnTime) {
		t.Errorf("txnTime %v", n.TxnTime)
	}
	n.TxnTime = want.TxnTime
	if n != want {
		t.Errorf("got %+v\nwant %+v", n, want)
	}

	refund := sampleNotification()
	refund[FieldTxnType], refund[FieldTxnSubType] = TxnRefund, SubTypeDefault
	refund[FieldOrigQryID] = "782603011155001234567"
	refund[FieldQueryID] = "782603011300001234568"
	n, err = c.ParseNotification(toValues(gatewaySign(t, p, p.gatewayPEM, refund)))
	if err != nil || n.OrigQueryID != "782603011155001234567" || n.TxnType != TxnRefund {
		t.Errorf("refund: %+v, %v", n, err)
	}

	const card = "6216261000000000018"
	cases := []struct {
		name   string
		change func(url.Values)
		kind   error
		field  string
	}{
		{"tampered amount", func(v url.Values) { v.Set(FieldTxnAmt, "1") }, ErrBadSignature, FieldSignature},
		{"tampered respCode", func(v url.Values) { v.Set(FieldRespCode, "01") }, ErrBadSignature, FieldSignature},
		{"no signature", func(v url.Values) { v.Del(FieldSignature) }, ErrBadSignature, FieldSignature},
		{"no certificate", func(v url.Values) { v.Del(FieldSignPubKeyCert) }, ErrBadCertificate, FieldSignPubKeyCert},
		{"field twice", func(v url.Values) { v.Add(FieldTxnAmt, "123456") }, ErrMalformed, FieldTxnAmt},
		{"missing orderId", func(v url.Values) { v.Del(FieldOrderID) }, ErrMalformed, FieldOrderID},
		{"missing queryId", func(v url.Values) { v.Del(FieldQueryID) }, ErrMalformed, FieldQueryID},
		{"empty", func(v url.Values) {
			for k := range v {
				delete(v, k)
			}
		}, ErrMalformed, ""},
		{"card number added", func(v url.Values) { v.Set(FieldAccNo, card) }, ErrBadSignature, FieldSignature},
		{"card number twice", func(v url.Values) { v.Add(FieldAccNo, card); v.Add(FieldAccNo, card) }, ErrMalformed, FieldAccNo},
	}
	for _, tc := range cases {
		v := toValues(gatewaySign(t, p, p.gatewayPEM, sampleNotification()))
		tc.change(v)
		_, err := c.ParseNotification(v)
		checkFieldErr(t, tc.name, err, tc.kind, tc.field)
		if err != nil && strings.Contains(err.Error(), card) {
			t.Errorf("%s: the card number is in the error: %v", tc.name, err)
		}
	}

	// Correctly signed by the gateway, but wrong inside.
	signedCases := []struct {
		name   string
		change func(map[string]string)
		field  string
	}{
		{"other merchant", func(m map[string]string) { m[FieldMerID] = "898310048160002" }, FieldMerID},
		{"amount with decimals", func(m map[string]string) { m[FieldTxnAmt] = "1234.56" }, FieldTxnAmt},
		{"amount zero", func(m map[string]string) { m[FieldTxnAmt] = "0" }, FieldTxnAmt},
		{"amount leading zero", func(m map[string]string) { m[FieldTxnAmt] = "0100" }, FieldTxnAmt},
		{"amount negative", func(m map[string]string) { m[FieldTxnAmt] = "-100" }, FieldTxnAmt},
		{"amount over Max", func(m map[string]string) { m[FieldTxnAmt] = "10000000001" }, FieldTxnAmt},
		{"amount huge", func(m map[string]string) { m[FieldTxnAmt] = "99999999999999999999" }, FieldTxnAmt},
		{"txnTime short", func(m map[string]string) { m[FieldTxnTime] = "202603011155" }, FieldTxnTime},
		{"txnTime impossible", func(m map[string]string) { m[FieldTxnTime] = "20260231115500" }, FieldTxnTime},
		{"txnTime ISO", func(m map[string]string) { m[FieldTxnTime] = "2026-03-01T11:55" }, FieldTxnTime},
		{"bad settleDate", func(m map[string]string) { m[FieldSettleDate] = "1301" }, FieldSettleDate},
		{"no settleDate on success", func(m map[string]string) { delete(m, FieldSettleDate) }, FieldSettleDate},
		{"query txnType", func(m map[string]string) { m[FieldTxnType] = TxnQuery }, FieldTxnType},
		{"refund without origQryId", func(m map[string]string) { m[FieldTxnType] = TxnRefund }, FieldOrigQryID},
		{"consume with origQryId", func(m map[string]string) { m[FieldOrigQryID] = "1234" }, FieldOrigQryID},
		{"currency USD", func(m map[string]string) { m[FieldCurrencyCode] = "840" }, FieldCurrencyCode},
		{"bad respCode", func(m map[string]string) { m[FieldRespCode] = "0" }, FieldRespCode},
		{"bad orderId", func(m map[string]string) { m[FieldOrderID] = "GP/1" }, FieldOrderID},
		{"old version", func(m map[string]string) { m[FieldVersion] = "5.0.0" }, FieldVersion},
		{"sign method", func(m map[string]string) { m[FieldSignMethod] = "11" }, FieldSignMethod},
		{"encoding", func(m map[string]string) { m[FieldEncoding] = "GBK" }, FieldEncoding},
		{"bad amount with card", func(m map[string]string) { m[FieldTxnAmt] = "x"; m[FieldAccNo] = card }, FieldTxnAmt},
	}
	for _, tc := range signedCases {
		f := sampleNotification()
		tc.change(f)
		_, err := c.ParseNotification(toValues(gatewaySign(t, p, p.gatewayPEM, f)))
		checkFieldErr(t, tc.name, err, ErrMalformed, tc.field)
		if err != nil && strings.Contains(err.Error(), card) {
			t.Errorf("%s: the card number is in the error: %v", tc.name, err)
		}
	}

	// A failed payment is a notification too: Outcome Failed, no
	// settleDate needed.
	f := sampleNotification()
	f[FieldRespCode] = "01"
	delete(f, FieldSettleDate)
	if n, err := c.ParseNotification(toValues(gatewaySign(t, p, p.gatewayPEM, f))); err != nil || n.Outcome != Failed {
		t.Errorf("failed payment: %+v %v", n, err)
	}
}

func checkFieldErr(t *testing.T, name string, err, kind error, field string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s: %v, want %v", name, err, kind)
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("%s: %T is not a *FieldError", name, err)
		return
	}
	if fe.Field != field {
		t.Errorf("%s: error names field %q, want %q (%v)", name, fe.Field, field, err)
	}
}

func TestQuery(t *testing.T) {
	p := loadTestPKI(t)
	var answer func(map[string]string) map[string]string
	srv := fakeGateway(t, p, func(req map[string]string) map[string]string { return answer(req) })
	c := newTestClient(t, p, srv.URL)
	txnTime := time.Date(2026, 3, 1, 11, 55, 0, 0, Shanghai)
	found := func(orig string) func(map[string]string) map[string]string {
		return func(req map[string]string) map[string]string {
			if req[FieldTxnType] != TxnQuery || req[FieldOrderID] != "GP20260301000001" || req[FieldTxnTime] != "20260301115500" {
				t.Errorf("query request %v", req)
			}
			a := answerTo(req, RespSuccess)
			a[FieldTxnType] = TxnConsume
			a[FieldOrigRespCode], a[FieldOrigRespMsg] = orig, "orig"
			a[FieldQueryID], a[FieldTxnAmt], a[FieldSettleDate] = "782603011155001234567", "123456", "0301"
			return a
		}
	}
	for _, tc := range []struct {
		name    string
		answer  func(map[string]string) map[string]string
		outcome Outcome
		resp    string
	}{
		{"paid", found("00"), Succeeded, "00"},
		{"declined", found("01"), Failed, "00"},
		{"processing", found("05"), Unknown, "00"},
		{"not found", func(req map[string]string) map[string]string { return answerTo(req, RespNotFound) }, Unknown, "34"},
		{"try later", func(req map[string]string) map[string]string { return answerTo(req, RespUnknown03) }, Unknown, "03"},
		{"refused", func(req map[string]string) map[string]string { return answerTo(req, RespSignature) }, Unknown, "11"},
	} {
		answer = tc.answer
		r, err := c.Query(context.Background(), "GP20260301000001", txnTime)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if r.Outcome != tc.outcome || r.RespCode != tc.resp {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
	answer = found("00")
	r, _ := c.Query(context.Background(), "GP20260301000001", txnTime)
	if r.Amount != 123456 || r.QueryID != "782603011155001234567" || r.SettleDate != "0301" || r.TxnType != TxnConsume {
		t.Errorf("paid: %+v", r)
	}

	for _, tc := range []struct {
		name   string
		answer func(map[string]string) map[string]string
		kind   error
	}{
		{"HTTP 503", func(map[string]string) map[string]string { return nil }, ErrUnavailable},
		{"forged", func(req map[string]string) map[string]string {
			a := found("00")(req)
			gatewaySign(t, p, p.gatewayPEM, a)
			a[FieldTxnAmt] = "1"
			return a
		}, ErrBadSignature},
		{"other root", func(req map[string]string) map[string]string {
			return gatewaySign(t, p, p.otherGatewayPEM, found("00")(req))
		}, ErrBadCertificate},
		{"unsigned", func(req map[string]string) map[string]string {
			a := found("00")(req)
			a[FieldSignature] = ""
			a[FieldSignPubKeyCert] = p.gatewayPEM
			return a
		}, ErrBadSignature},
		{"other order", func(req map[string]string) map[string]string {
			a := found("00")(req)
			a[FieldOrderID] = "GP20260301000002"
			return a
		}, ErrMalformed},
		{"other merchant", func(req map[string]string) map[string]string {
			a := found("00")(req)
			a[FieldMerID] = "898310048160002"
			return a
		}, ErrMalformed},
		{"success without amount", func(req map[string]string) map[string]string {
			a := found("00")(req)
			delete(a, FieldTxnAmt)
			return a
		}, ErrMalformed},
	} {
		answer = tc.answer
		if _, err := c.Query(context.Background(), "GP20260301000001", txnTime); !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.kind)
		}
	}

	srv.Close()
	if _, err := c.Query(context.Background(), "GP20260301000001", txnTime); !errors.Is(err, ErrUnavailable) {
		t.Errorf("gateway down: %v", err)
	}
	if _, err := c.Query(context.Background(), "bad", txnTime); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad order ID: %v", err)
	}
}

func TestRefundAndCancel(t *testing.T) {
	p := loadTestPKI(t)
	var code string
	var seen map[string]string
	srv := fakeGateway(t, p, func(req map[string]string) map[string]string {
		seen = req
		a := answerTo(req, code)
		a[FieldQueryID] = "782603011300001234568"
		return a
	})
	c := newTestClient(t, p, srv.URL)
	rr := RefundRequest{OrderID: "GPR2026030100001", TxnTime: testNow, OrigQueryID: "782603011155001234567", Amount: 5000, BackURL: "https://notify.gridpay.example/unionpay"}
	for _, tc := range []struct {
		code    string
		outcome Outcome
	}{{"00", Unknown}, {"03", Unknown}, {"05", Unknown}, {"12", Unknown}, {"33", Failed}, {"35", Failed}, {"11", Failed}} {
		code = tc.code
		a, err := c.Refund(context.Background(), rr)
		if err != nil || a.Outcome != tc.outcome || a.RespCode != tc.code {
			t.Errorf("refund answered %s: %+v, %v", tc.code, a, err)
		}
	}
	for k, v := range map[string]string{"txnType": "04", "txnSubType": "00", "origQryId": "782603011155001234567", "txnAmt": "5000", "orderId": "GPR2026030100001", "backUrl": rr.BackURL} {
		if seen[k] != v {
			t.Errorf("refund request %s = %q, want %q", k, seen[k], v)
		}
	}
	code = "00"
	a, err := c.Cancel(context.Background(), rr)
	if err != nil || a.QueryID != "782603011300001234568" || seen[FieldTxnType] != TxnCancel {
		t.Errorf("cancel: %+v %v %v", a, err, seen[FieldTxnType])
	}
	bad := rr
	bad.OrigQueryID = ""
	if _, err := c.Refund(context.Background(), bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("no origQryId: %v", err)
	}
	bad = rr
	bad.Amount = 0
	if _, err := c.Cancel(context.Background(), bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero amount: %v", err)
	}
}

func TestDownloadFile(t *testing.T) {
	p := loadTestPKI(t)
	var answer func(map[string]string) map[string]string
	srv := fakeGateway(t, p, func(req map[string]string) map[string]string { return answer(req) })
	c := newTestClient(t, p, srv.URL)
	text := "UPRECON|1|" + testMerchantID + "|0301\n" +
		"D|01|GP20260301000001|20260301115500|782603011155001234567||123456|00\n" +
		"D|04|GPR2026030100001|20260301130000|782603011300001234568|782603011155001234567|5000|00\n" +
		"END|2|123456|5000\n"
	answer = func(req map[string]string) map[string]string {
		if req[FieldTxnType] != TxnFileDownload || req[FieldFileType] != "00" || req[FieldSettleDate] != "0301" || req[FieldTxnTime] != "20260301120000" {
			t.Errorf("file request %v", req)
		}
		a := answerTo(req, RespSuccess)
		a[FieldFileContent] = fileContent(t, text)
		a[FieldFileName] = "INN26030188ZM_" + testMerchantID
		return a
	}
	recs, err := c.DownloadFile(context.Background(), "0301")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Amount != 123456 || recs[1].TxnType != TxnRefund || recs[1].OrigQueryID != "782603011155001234567" || recs[1].SettleDate != "0301" {
		t.Errorf("records %+v", recs)
	}
	answer = func(req map[string]string) map[string]string { return answerTo(req, RespNoFile) }
	if _, err := c.DownloadFile(context.Background(), "0301"); !errors.Is(err, ErrNoFile) {
		t.Errorf("98: %v", err)
	}
	answer = func(req map[string]string) map[string]string { return answerTo(req, RespUnknown03) }
	if _, err := c.DownloadFile(context.Background(), "0301"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("03: %v", err)
	}
	answer = func(req map[string]string) map[string]string {
		a := answerTo(req, RespSuccess)
		a[FieldFileContent] = "not base64!"
		return a
	}
	if _, err := c.DownloadFile(context.Background(), "0301"); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad content: %v", err)
	}
	if _, err := c.DownloadFile(context.Background(), "1332"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad date: %v", err)
	}
}

func TestParseReconFile(t *testing.T) {
	const head = "UPRECON|1|" + testMerchantID + "|0301\n"
	const d1 = "D|01|GP20260301000001|20260301115500|782603011155001234567||123456|00\n"
	const d2 = "D|31|GPC2026030100001|20260301130000|782603011300001234568|782603011155001234567|123456|00\n"
	good := head + d1 + d2 + "END|2|123456|123456\n"
	recs, err := ParseReconFile([]byte(good), testMerchantID, "0301")
	if err != nil || len(recs) != 2 {
		t.Fatalf("good file: %v %+v", err, recs)
	}
	if empty, err := ParseReconFile([]byte(head+"END|0|0|0\n"), testMerchantID, "0301"); err != nil || len(empty) != 0 {
		t.Errorf("empty day: %v %v", empty, err)
	}
	for name, text := range map[string]string{
		"empty":               "",
		"no trailer":          head + d1 + d2,
		"cut mid line":        head + d1 + d2[:30],
		"cut trailer":         head + d1 + d2 + "END|2|123456|12",
		"no final newline":    head + d1 + d2 + "END|2|123456|123456",
		"count wrong":         head + d1 + d2 + "END|3|123456|123456\n",
		"sum wrong":           head + d1 + d2 + "END|2|123457|123456\n",
		"line dropped":        head + d1 + "END|2|123456|123456\n",
		"CRLF":                strings.ReplaceAll(good, "\n", "\r\n"),
		"blank line":          head + d1 + "\n" + d2 + "END|2|123456|123456\n",
		"after trailer":       good + d1,
		"other merchant":      strings.Replace(good, testMerchantID, "898310048160002", 1),
		"other date":          strings.Replace(good, "|0301\n", "|0302\n", 1),
		"version 2":           strings.Replace(good, "UPRECON|1|", "UPRECON|2|", 1),
		"extra field":         head + strings.Replace(d1, "|00\n", "|00|x\n", 1) + d2 + "END|2|123456|123456\n",
		"missing field":       head + strings.Replace(d1, "|123456|00", "|123456", 1) + d2 + "END|2|123456|123456\n",
		"decimal amount":      head + strings.Replace(d1, "|123456|", "|1234.56|", 1) + d2 + "END|2|123456|123456\n",
		"zero amount":         head + strings.Replace(d1, "|123456|", "|0|", 1) + d2 + "END|2|0|123456\n",
		"failed record":       head + strings.Replace(d1, "|00\n", "|01\n", 1) + d2 + "END|2|123456|123456\n",
		"query txnType":       head + strings.Replace(d1, "D|01|", "D|00|", 1) + d2 + "END|2|123456|123456\n",
		"consume origQryId":   head + strings.Replace(d1, "||", "|1|", 1) + d2 + "END|2|123456|123456\n",
		"cancel no origQryId": head + d1 + strings.Replace(d2, "|782603011155001234567|", "||", 1) + "END|2|123456|123456\n",
		"duplicate queryId":   head + d1 + d1 + "END|2|246912|0\n",
		"bad time":            head + strings.Replace(d1, "20260301115500", "20260301996000", 1) + d2 + "END|2|123456|123456\n",
		"bad order ID":        head + strings.Replace(d1, "GP20260301000001", "GP-1", 1) + d2 + "END|2|123456|123456\n",
		"header only":         head,
		"garbage":             "PK\x03\x04garbage\n",
	} {
		if _, err := ParseReconFile([]byte(text), testMerchantID, "0301"); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// Decoding: a truncated compressed stream is refused too.
	content := fileContent(t, good)
	raw, _ := base64Decode(content)
	if _, err := DecodeFileContent(base64Encode(raw[:len(raw)-6])); !errors.Is(err, ErrMalformed) {
		t.Errorf("truncated zlib: %v", err)
	}
	if text, err := DecodeFileContent(content); err != nil || string(text) != good {
		t.Errorf("decode: %v", err)
	}
}

func TestTimesAndAmounts(t *testing.T) {
	tm, err := ParseTime("20260301115500")
	if err != nil || !tm.Equal(time.Date(2026, 3, 1, 3, 55, 0, 0, time.UTC)) {
		t.Errorf("ParseTime: %v %v", tm, err)
	}
	if FormatTime(time.Date(2026, 3, 1, 16, 30, 0, 0, time.UTC)) != "20260302003000" {
		t.Error("FormatTime does not use Shanghai")
	}
	if SettleDateOf(time.Date(2026, 3, 1, 16, 30, 0, 0, time.UTC)) != "0302" {
		t.Error("SettleDateOf does not use Shanghai")
	}
	for _, s := range []string{"0229", "1231", "0101"} {
		if CheckSettleDate(s) != nil {
			t.Errorf("%s refused", s)
		}
	}
	for _, s := range []string{"0230", "1301", "0001", "301", "03010", "ab01"} {
		if CheckSettleDate(s) == nil {
			t.Errorf("%s accepted", s)
		}
	}
	if a, err := ParseAmount("10000000000"); err != nil || a != money.Max {
		t.Errorf("Max: %v %v", a, err)
	}
	for _, s := range []string{"", "0", "01", "+1", "1e3", "1.0", " 1", "10000000001"} {
		if _, err := ParseAmount(s); err == nil {
			t.Errorf("amount %q accepted", s)
		}
	}
}

// The client must not follow redirects with a signed request.
func TestNoRedirects(t *testing.T) {
	p := loadTestPKI(t)
	srv := fakeGateway(t, p, func(map[string]string) map[string]string { return nil })
	redirect := http.NewServeMux()
	redirect.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.URL, http.StatusTemporaryRedirect)
	})
	rs := httptestServer(t, redirect)
	c := newTestClient(t, p, rs.URL)
	if _, err := c.Query(context.Background(), "GP20260301000001", testNow); !errors.Is(err, ErrUnavailable) {
		t.Errorf("redirect: %v", err)
	}
}
