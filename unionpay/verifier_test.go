package unionpay

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// The key-less verifier accepts what the client accepts and refuses a
// tampered notification the same way.
func TestVerifier(t *testing.T) {
	p := loadTestPKI(t)
	roots := x509.NewCertPool()
	roots.AddCert(p.root)
	v, err := NewVerifier(Config{MerchantID: testMerchantID, Roots: roots, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	form := toValues(gatewaySign(t, p, p.gatewayPEM, sampleNotification()))
	n, err := v.ParseNotification(form)
	if err != nil || n.Outcome != Succeeded || n.Amount != 123456 {
		t.Fatalf("good notification: %+v %v", n, err)
	}
	form.Set(FieldTxnAmt, "1")
	if _, err := v.ParseNotification(form); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered amount: %v", err)
	}
	if _, err := NewVerifier(Config{MerchantID: testMerchantID}); err == nil {
		t.Fatal("a verifier without roots was built")
	}
}
