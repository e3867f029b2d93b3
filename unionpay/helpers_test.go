package unionpay

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// newTestClient makes a client trusting testdata/root.pem, at testNow,
// whose URLs all point at base.
func newTestClient(t testing.TB, p *testPKI, base string) *Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(p.root)
	c, err := NewClient(Config{
		MerchantID: testMerchantID,
		FrontURL:   base + "/gateway/api/frontTransReq.do",
		BackURL:    base + "/gateway/api/backTransReq.do",
		QueryURL:   base + "/gateway/api/queryTrans.do",
		FileURL:    base + "/gateway/api/fileTransReq.do",
		Signer:     p.merchantKey,
		SignCert:   p.merchantCert,
		Roots:      roots,
		Now:        func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// gatewaySign signs fields as the gateway would, with the certificate
// certPEM (whose key is the test gateway key).
func gatewaySign(t testing.TB, p *testPKI, certPEM string, f map[string]string) map[string]string {
	t.Helper()
	f[FieldSignPubKeyCert] = certPEM
	delete(f, FieldSignature)
	sig, err := Sign(context.Background(), p.gatewayKey, f)
	if err != nil {
		t.Fatal(err)
	}
	f[FieldSignature] = sig
	return f
}

func toValues(f map[string]string) url.Values {
	v := url.Values{}
	for k, s := range f {
		v.Set(k, s)
	}
	return v
}

// sampleNotification is a successful consume notification, unsigned.
func sampleNotification() map[string]string {
	return map[string]string{
		FieldVersion: Version, FieldEncoding: Encoding, FieldSignMethod: SignMethodRSA,
		FieldTxnType: TxnConsume, FieldTxnSubType: SubTypeConsume, FieldBizType: BizTypeGateway,
		FieldAccessType: AccessMerchant, FieldMerID: testMerchantID,
		FieldOrderID: "GP20260301000001", FieldTxnTime: "20260301115500", FieldTxnAmt: "123456",
		FieldCurrencyCode: CurrencyCNY, FieldQueryID: "782603011155001234567",
		FieldRespCode: RespSuccess, FieldRespMsg: "成功[0000000]", FieldSettleDate: "0301",
		FieldTraceNo: "123456", FieldTraceTime: "0301115530",
	}
}

// fakeGateway answers every request with answer(request fields), signed
// with the test gateway certificate, after checking the merchant's
// signature.
func fakeGateway(t *testing.T, p *testPKI, answer func(req map[string]string) map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("fake gateway: %v", err)
			return
		}
		req, err := single(r.PostForm)
		if err != nil {
			t.Errorf("fake gateway: %v", err)
			return
		}
		pub := p.merchantCert.PublicKey.(*rsa.PublicKey)
		if err := Verify(pub, req); err != nil {
			t.Errorf("fake gateway: merchant signature: %v", err)
		}
		if req[FieldCertID] != CertID(p.merchantCert) {
			t.Errorf("fake gateway: certId %q", req[FieldCertID])
		}
		a := answer(req)
		if a == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if _, signed := a[FieldSignature]; !signed {
			gatewaySign(t, p, p.gatewayPEM, a)
		}
		io.WriteString(w, toValues(a).Encode())
	}))
	t.Cleanup(srv.Close)
	return srv
}

// answerTo starts an answer with the fields a real answer echoes.
func answerTo(req map[string]string, respCode string) map[string]string {
	a := map[string]string{FieldVersion: Version, FieldEncoding: Encoding, FieldSignMethod: SignMethodRSA, FieldRespCode: respCode, FieldRespMsg: "msg"}
	for _, f := range []string{FieldTxnType, FieldTxnSubType, FieldBizType, FieldAccessType, FieldMerID, FieldOrderID, FieldTxnTime, FieldSettleDate} {
		if v, ok := req[f]; ok {
			a[f] = v
		}
	}
	return a
}

func fileContent(t testing.TB, text string) string {
	t.Helper()
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	zw.Write([]byte(text))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

func ed25519Signer(t testing.TB) crypto.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func base64Decode(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
func base64Encode(b []byte) string          { return base64.StdEncoding.EncodeToString(b) }

func httptestServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
