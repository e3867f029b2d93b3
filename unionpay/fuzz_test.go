package unionpay

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/gridpay/gridpay/money"
)

// FuzzParseNotification feeds arbitrary request bodies to
// ParseNotification: it must never panic, and whatever it accepts must be
// consistent. The seed corpus in testdata/fuzz/FuzzParseNotification holds
// valid notifications (signed with the test gateway key, valid at testNow)
// and near misses; regenerate it with -update.
func FuzzParseNotification(f *testing.F) {
	p := loadTestPKI(f)
	c := newTestClient(f, p, "https://gw.example")
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		n, err := c.ParseNotification(form)
		if err != nil {
			if n != (Notification{}) {
				t.Fatalf("an error with a notification: %+v", n)
			}
			return
		}
		if n.Amount < 1 || n.Amount > money.Max {
			t.Fatalf("accepted amount %d", n.Amount)
		}
		if n.Outcome != Classify(n.RespCode) {
			t.Fatalf("outcome %v for %s", n.Outcome, n.RespCode)
		}
		if form.Get(FieldMerID) != testMerchantID {
			t.Fatalf("accepted merchant %q", form.Get(FieldMerID))
		}
		if Verify(&p.gatewayKey.PublicKey, mustSingle(t, form)) != nil {
			t.Fatal("accepted a notification the gateway key did not sign")
		}
	})
}

func mustSingle(t *testing.T, form url.Values) map[string]string {
	m, err := single(form)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWriteFuzzCorpus rewrites the seed corpus (with -update).
func TestWriteFuzzCorpus(t *testing.T) {
	p := loadTestPKI(t)
	c := newTestClient(t, p, "https://gw.example")
	consume := toValues(gatewaySign(t, p, p.gatewayPEM, sampleNotification()))
	refundFields := sampleNotification()
	refundFields[FieldTxnType], refundFields[FieldTxnSubType] = TxnRefund, SubTypeDefault
	refundFields[FieldOrigQryID], refundFields[FieldQueryID] = "782603011155001234567", "782603011300001234568"
	refund := toValues(gatewaySign(t, p, p.gatewayPEM, refundFields))
	tampered := toValues(gatewaySign(t, p, p.gatewayPEM, sampleNotification()))
	tampered.Set(FieldTxnAmt, "1")
	twice := toValues(gatewaySign(t, p, p.gatewayPEM, sampleNotification()))
	twice.Add(FieldRespCode, "00")
	otherRoot := toValues(gatewaySign(t, p, p.otherGatewayPEM, sampleNotification()))
	seeds := map[string]string{
		"consume":    consume.Encode(),
		"refund":     refund.Encode(),
		"tampered":   tampered.Encode(),
		"twice":      twice.Encode(),
		"other-root": otherRoot.Encode(),
		"empty":      "",
		"garbage":    "a=%zz&&=b&c",
	}
	// The valid seeds must really be valid, or the corpus tests nothing.
	for _, name := range []string{"consume", "refund"} {
		v, _ := url.ParseQuery(seeds[name])
		if _, err := c.ParseNotification(v); err != nil {
			t.Fatalf("seed %s: %v", name, err)
		}
	}
	if !*update {
		return
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseNotification")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range seeds {
		data := fmt.Sprintf("go test fuzz v1\nstring(%s)\n", strconv.Quote(body))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
