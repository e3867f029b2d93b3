package activities

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

// The test activity environment runs activities as this workflow.
const testWorkflowID = "default-test-workflow-id"

var now = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

type payFixture struct {
	a    *Payments
	rec  *fakeRecords
	gw   *fakeGateway
	plat *fakePlatform
	key  *ecdsa.PrivateKey
	env  *testsuite.TestActivityEnvironment
}

func newPayFixture(t *testing.T) *payFixture {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0xab01), Subject: pkix.Name{CommonName: "C1"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	f := &payFixture{rec: newFakeRecords(), gw: &fakeGateway{}, key: key, plat: &fakePlatform{
		customers: map[string]platform.Customer{"C1": {ID: "C1", Name: "Beijing Steel"}},
		bills: map[string]platform.Bill{
			"B1": {ID: "B1", CustomerID: "C1", AmountDue: 1000, Status: platform.BillOverdue},
			"B2": {ID: "B2", CustomerID: "C1", AmountDue: 2000, Status: platform.BillOpen},
			"B3": {ID: "B3", CustomerID: "C1", AmountDue: 0, Paid: 500, Status: platform.BillSettled},
			"B9": {ID: "B9", CustomerID: "C2", AmountDue: 700, Status: platform.BillOpen},
		},
		postings: map[string]platform.Payment{},
	}}
	f.rec.certs["ab01"] = store.Certificate{Serial: "ab01", CustomerID: "C1", TokenSerial: "T1", DER: der}
	f.rec.bound["ab01"] = true
	f.a = &Payments{Records: f.rec, Gateway: f.gw, Platform: f.plat, FrontURL: "https://gridpay.test/paid", BackURL: "https://gridpay.test/notify",
		Now: func() time.Time { return now }}
	var s testsuite.WorkflowTestSuite
	f.env = s.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.a)
	return f
}

func (f *payFixture) instruction(t *testing.T, edit func(*protocol.PaymentInstruction)) InstructionCheck {
	t.Helper()
	p := protocol.PaymentInstruction{
		Version: 1, IdempotencyKey: "7f3c2a9e-1b4d-4c8a", CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", Kind: protocol.PayBills,
		BillIDs: []string{"B1", "B2"}, Amount: 3000, Currency: "CNY", Nonce: protocol.NewNonce(16), Timestamp: now.Add(-30 * time.Second),
	}
	if edit != nil {
		edit(&p)
	}
	enc, err := protocol.EncodePaymentInstruction(p)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := f.key.Sign(rand.Reader, protocol.PaymentInstructionDigest(enc), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return InstructionCheck{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", IdempotencyKey: p.IdempotencyKey, Kind: string(p.Kind),
		BillIDs: []string{"B2", "B1"}, Amount: p.Amount, Instruction: enc, Signature: sig}
}

// refusedAs checks err is a non-retryable application error of type typ
// whose message contains want.
func refusedAs(t *testing.T, err error, typ, want string) {
	t.Helper()
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != typ || !app.NonRetryable() || !strings.Contains(app.Message(), want) {
		t.Fatalf("got %v, want a non-retryable %s saying %q", err, typ, want)
	}
}

func TestVerifyInstruction(t *testing.T) {
	f := newPayFixture(t)
	req := f.instruction(t, nil)
	v, err := f.env.ExecuteActivity(f.a.VerifyInstruction, req)
	if err != nil {
		t.Fatal(err)
	}
	var got VerifiedInstruction
	v.Get(&got)
	if len(got.SHA256) != 32 || !got.Timestamp.Equal(now.Add(-30*time.Second)) {
		t.Fatalf("verified %+v", got)
	}
	if len(f.rec.audits) != 1 || f.rec.audits[0].Action != "payment.instruction" || f.rec.audits[0].Outcome != store.OutcomeOK ||
		f.rec.audits[0].Subject != testWorkflowID {
		t.Fatalf("audits %+v", f.rec.audits)
	}
	// A retried activity (same workflow) passes again, audited once.
	if _, err := f.env.ExecuteActivity(f.a.VerifyInstruction, req); err != nil || len(f.rec.audits) != 1 {
		t.Fatalf("retry: %v, audits %d", err, len(f.rec.audits))
	}
	// The same instruction under another payment workflow is a replay.
	for k := range f.rec.nonces {
		f.rec.nonces[k] = "payment/C1/other-key-000000000"
	}
	_, err = f.env.ExecuteActivity(f.a.VerifyInstruction, req)
	refusedAs(t, err, ErrTypeReplay, "replayed")
	last := f.rec.audits[len(f.rec.audits)-1]
	if last.Outcome != store.OutcomeRefused || last.Detail["error_type"] != ErrTypeReplay {
		t.Fatalf("refusal audit %+v", last)
	}
}

func TestVerifyInstructionRefusals(t *testing.T) {
	cases := []struct {
		name, typ, want string
		setup           func(t *testing.T, f *payFixture, req *InstructionCheck)
	}{
		{"bad signature", ErrTypeBadInstruction, "does not verify", func(t *testing.T, f *payFixture, req *InstructionCheck) { req.Signature[len(req.Signature)-1] ^= 1 }},
		{"signature by another key", ErrTypeBadInstruction, "does not verify", func(t *testing.T, f *payFixture, req *InstructionCheck) {
			other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			req.Signature, _ = other.Sign(rand.Reader, protocol.PaymentInstructionDigest(req.Instruction), crypto.SHA256)
		}},
		{"garbage", ErrTypeBadInstruction, "payment instruction", func(t *testing.T, f *payFixture, req *InstructionCheck) { req.Instruction = []byte{1, 2, 3} }},
		{"amount differs", ErrTypeBadInstruction, "amount", func(t *testing.T, f *payFixture, req *InstructionCheck) { req.Amount = 3001 }},
		{"bills differ", ErrTypeBadInstruction, "bill IDs", func(t *testing.T, f *payFixture, req *InstructionCheck) { req.BillIDs = []string{"B1"} }},
		{"bill twice", ErrTypeBadInstruction, "bill IDs", func(t *testing.T, f *payFixture, req *InstructionCheck) { req.BillIDs = []string{"B1", "B2", "B2"} }},
		{"key differs", ErrTypeBadInstruction, "idempotency key", func(t *testing.T, f *payFixture, req *InstructionCheck) { req.IdempotencyKey = "another-key-0000000" }},
		{"kind differs", ErrTypeBadInstruction, "kind", func(t *testing.T, f *payFixture, req *InstructionCheck) { req.Kind = "prepay" }},
		{"unknown certificate", ErrTypeBadInstruction, "not issued", func(t *testing.T, f *payFixture, req *InstructionCheck) { delete(f.rec.certs, "ab01") }},
		{"another customer's certificate", ErrTypeBadInstruction, "belongs to", func(t *testing.T, f *payFixture, req *InstructionCheck) { req.CustomerID = "C2" }},
		{"revoked", ErrTypeRevoked, "revoked", func(t *testing.T, f *payFixture, req *InstructionCheck) { f.rec.revoked["ab01"] = true }},
		{"not bound", ErrTypeNotBound, "no active binding", func(t *testing.T, f *payFixture, req *InstructionCheck) { f.rec.bound["ab01"] = false }},
		{"signed too early", ErrTypeStaleInstruction, "clock", func(t *testing.T, f *payFixture, req *InstructionCheck) {
			*req = f.instruction(t, func(p *protocol.PaymentInstruction) { p.Timestamp = now.Add(-6 * time.Minute) })
		}},
		{"signed in the future", ErrTypeStaleInstruction, "clock", func(t *testing.T, f *payFixture, req *InstructionCheck) {
			*req = f.instruction(t, func(p *protocol.PaymentInstruction) { p.Timestamp = now.Add(6 * time.Minute) })
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newPayFixture(t)
			req := f.instruction(t, nil)
			c.setup(t, f, &req)
			_, err := f.env.ExecuteActivity(f.a.VerifyInstruction, req)
			refusedAs(t, err, c.typ, c.want)
			if len(f.rec.audits) != 1 || f.rec.audits[0].Outcome != store.OutcomeRefused || len(f.rec.nonces) != 0 {
				t.Fatalf("audits %+v, nonces %v", f.rec.audits, f.rec.nonces)
			}
		})
	}
}

func TestCheckBills(t *testing.T) {
	f := newPayFixture(t)
	v, err := f.env.ExecuteActivity(f.a.CheckBills, BillsCheck{CustomerID: "C1", Kind: "bills", BillIDs: []string{"B1", "B2"}, Amount: 3000})
	if err != nil {
		t.Fatal(err)
	}
	var got CheckedBills
	v.Get(&got)
	if got.CustomerName != "Beijing Steel" || len(got.Allocations) != 2 || got.Allocations[1] != (platform.Allocation{BillID: "B2", Amount: 2000}) {
		t.Fatalf("checked %+v", got)
	}
	for _, c := range []struct {
		name      string
		req       BillsCheck
		typ, want string
	}{
		{"settled bill", BillsCheck{CustomerID: "C1", Kind: "bills", BillIDs: []string{"B1", "B3"}, Amount: 1000}, ErrTypeBillNotPayable, "already settled"},
		{"another customer's bill", BillsCheck{CustomerID: "C1", Kind: "bills", BillIDs: []string{"B9"}, Amount: 700}, ErrTypeBillNotPayable, "not a bill of customer C1"},
		{"unknown bill", BillsCheck{CustomerID: "C1", Kind: "bills", BillIDs: []string{"B404"}, Amount: 700}, ErrTypeBillNotPayable, "B404"},
		{"overpay", BillsCheck{CustomerID: "C1", Kind: "bills", BillIDs: []string{"B1"}, Amount: 1001}, ErrTypeAmountMismatch, "¥10.01 differs from the ¥10.00 due"},
		{"underpay", BillsCheck{CustomerID: "C1", Kind: "bills", BillIDs: []string{"B1", "B2"}, Amount: 2999}, ErrTypeAmountMismatch, "differs"},
		{"unknown customer", BillsCheck{CustomerID: "C404", Kind: "bills", BillIDs: []string{"B1"}, Amount: 1000}, ErrTypeUnknownCustomer, "C404"},
		{"top-up too small", BillsCheck{CustomerID: "C1", Kind: "prepay", Amount: 99}, ErrTypeAmountMismatch, "between ¥1.00"},
		{"top-up too large", BillsCheck{CustomerID: "C1", Kind: "prepay", Amount: DefaultPrepayMax + 1}, ErrTypeAmountMismatch, "between"},
	} {
		_, err := f.env.ExecuteActivity(f.a.CheckBills, c.req)
		t.Run(c.name, func(t *testing.T) { refusedAs(t, err, c.typ, c.want) })
	}
	if _, err := f.env.ExecuteActivity(f.a.CheckBills, BillsCheck{CustomerID: "C1", Kind: "prepay", Amount: 50000}); err != nil {
		t.Fatalf("top-up: %v", err)
	}
	// The platform being down is retried, not a refusal.
	f.plat.down = true
	_, err = f.env.ExecuteActivity(f.a.CheckBills, BillsCheck{CustomerID: "C1", Kind: "bills", BillIDs: []string{"B1"}, Amount: 1000})
	var app *temporal.ApplicationError
	if err == nil || errors.As(err, &app) && app.NonRetryable() {
		t.Fatalf("platform down: %v", err)
	}
}

func newOrder() NewOrder {
	return NewOrder{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", IdempotencyKey: "7f3c2a9e-1b4d-4c8a", Kind: "bills",
		Allocations: []platform.Allocation{{BillID: "B1", Amount: 1000}, {BillID: "B2", Amount: 2000}}, Amount: 3000,
		InstructionSHA256: make([]byte, 32), TxnTime: now, PayDeadline: now.Add(15 * time.Minute)}
}

func TestCreateOrderIsIdempotent(t *testing.T) {
	f := newPayFixture(t)
	var first, second CreatedOrder
	v, err := f.env.ExecuteActivity(f.a.CreateOrder, newOrder())
	if err != nil {
		t.Fatal(err)
	}
	v.Get(&first)
	if first.OrderID != OrderIDFor(testWorkflowID) || first.Form.Fields["orderId"] != first.OrderID || first.Form.Fields["txnAmt"] != "3000" ||
		!first.PayDeadline.Equal(now.Add(15*time.Minute)) || f.gw.forms[0].BackURL != "https://gridpay.test/notify" {
		t.Fatalf("order %+v, forms %+v", first, f.gw.forms)
	}
	p := f.rec.payments[0]
	if p.Status != store.PaymentAwaiting || strings.Join(p.BillIDs, ",") != "B1,B2" || p.BillAmounts[1] != 2000 {
		t.Fatalf("recorded %+v", p)
	}
	// A retry later, even with another txn time, hands out the same order.
	later := newOrder()
	later.TxnTime, later.PayDeadline = now.Add(time.Hour), now.Add(time.Hour+15*time.Minute)
	v, err = f.env.ExecuteActivity(f.a.CreateOrder, later)
	if err != nil {
		t.Fatal(err)
	}
	v.Get(&second)
	if second.OrderID != first.OrderID || !second.TxnTime.Equal(first.TxnTime) || second.Form.Fields["txnTime"] != first.Form.Fields["txnTime"] {
		t.Fatalf("second order %+v", second)
	}
	if len(f.rec.payments) != 1 {
		t.Fatalf("%d payments recorded", len(f.rec.payments))
	}
	// The key recorded for another payment is refused for good.
	f.rec.payments[0].WorkflowID = "payment/C1/someone-else"
	_, err = f.env.ExecuteActivity(f.a.CreateOrder, newOrder())
	refusedAs(t, err, ErrTypePaymentConflict, "another payment")
}

func TestOrderIDs(t *testing.T) {
	alnum := regexp.MustCompile(`^[A-Za-z0-9]{8,32}$`)
	o := OrderIDFor("payment/C1/k")
	r1, r2 := RefundOrderIDFor(o, 1), RefundOrderIDFor(o, 2)
	for _, id := range []string{o, r1, r2} {
		if !alnum.MatchString(id) || len(id) != 32 {
			t.Errorf("%q is not a UnionPay orderId", id)
		}
	}
	if o == OrderIDFor("payment/C1/k2") || r1 == r2 || o != OrderIDFor("payment/C1/k") {
		t.Error("order IDs are not derived one to one")
	}
	if ref := PostingReference("C31000002", "7f3c2a9e-1b4d-4c8a"); ref != "gp:C31000002:7f3c2a9e-1b4d-4c8a" {
		t.Errorf("reference %q", ref)
	}
	long := PostingReference(strings.Repeat("c", 64), strings.Repeat("k", 64))
	if len(long) > 128 || !strings.HasPrefix(long, "gp:") || long == PostingReference(strings.Repeat("c", 64), strings.Repeat("k", 63)+"j") {
		t.Errorf("long reference %q", long)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`).MatchString(long) {
		t.Errorf("reference %q breaks the platform's key pattern", long)
	}
}

// paidPayment records a payment, paid.
func (f *payFixture) paidPayment(t *testing.T, kind string) store.Payment {
	t.Helper()
	o := newOrder()
	if kind == "prepay" {
		o.Kind, o.Allocations = "prepay", nil
	}
	if _, err := f.env.ExecuteActivity(f.a.CreateOrder, o); err != nil {
		t.Fatal(err)
	}
	v, err := f.env.ExecuteActivity(f.a.MarkPaid, PaidRequest{OrderID: OrderIDFor(testWorkflowID), QueryID: "Q777", SettleDate: "0301", Source: "query"})
	if err != nil {
		t.Fatal(err)
	}
	var p store.Payment
	v.Get(&p)
	return p
}

func TestPostToPlatform(t *testing.T) {
	f := newPayFixture(t)
	orderID := OrderIDFor(testWorkflowID)
	// Not paid yet: never posted.
	if _, err := f.env.ExecuteActivity(f.a.CreateOrder, newOrder()); err != nil {
		t.Fatal(err)
	}
	_, err := f.env.ExecuteActivity(f.a.PostToPlatform, orderID)
	refusedAs(t, err, ErrTypeIllegalTransition, "awaiting_payment")
	if len(f.plat.posts) != 0 {
		t.Fatal("an unpaid payment was posted")
	}
	p := f.paidPayment(t, "bills")
	v, err := f.env.ExecuteActivity(f.a.PostToPlatform, orderID)
	if err != nil {
		t.Fatal(err)
	}
	var posted platform.Payment
	v.Get(&posted)
	pp := f.plat.posts[0]
	if pp.Reference != "gp:C1:7f3c2a9e-1b4d-4c8a" || pp.Amount != 3000 || pp.Prepaid || pp.Channel != "unionpay" || pp.ChannelTxnID != "Q777" ||
		!pp.PaidAt.Equal(*p.PaidAt) || len(pp.Allocations) != 2 || pp.Allocations[0] != (platform.Allocation{BillID: "B1", Amount: 1000}) {
		t.Fatalf("posted %+v", pp)
	}
	if posted.Reference != pp.Reference {
		t.Fatalf("answer %+v", posted)
	}
	// Permanent refusals are final; the platform being down is not.
	for _, code := range []platform.Code{platform.CodeAlreadySettled, platform.CodeAmountMismatch, platform.CodeConflict, platform.CodeBillNotFound, platform.CodeUnknownCustomer} {
		f.plat.postErr = &platform.Error{Code: code, Message: "bill B1 was paid at a counter"}
		_, err := f.env.ExecuteActivity(f.a.PostToPlatform, orderID)
		refusedAs(t, err, ErrTypePostingRefused, string(code))
	}
	f.plat.postErr = &platform.Error{Code: platform.CodeUnavailable, Message: "maintenance"}
	_, err = f.env.ExecuteActivity(f.a.PostToPlatform, orderID)
	var app *temporal.ApplicationError
	if err == nil || errors.As(err, &app) && app.NonRetryable() {
		t.Fatalf("unavailable: %v", err)
	}
	// A refusal of a payment the platform already holds under our
	// reference (an earlier attempt's answer lost) is that posting, never a
	// reason to refund.
	f.plat.postErr = &platform.Error{Code: platform.CodeAlreadySettled, Message: "bill B1 is settled"}
	f.plat.postings[pp.Reference] = platform.Payment{Reference: pp.Reference, Amount: 3000, Status: platform.PaymentPosted}
	v, err = f.env.ExecuteActivity(f.a.PostToPlatform, orderID)
	if err != nil || v.Get(&posted) != nil || posted.Reference != pp.Reference {
		t.Fatalf("already posted under our reference: %+v %v", posted, err)
	}
	delete(f.plat.postings, pp.Reference)

	// MarkPosted records it and makes the receipt.
	f.plat.postErr = nil
	v, err = f.env.ExecuteActivity(f.a.MarkPosted, PostedRequest{OrderID: orderID, PostingRef: pp.Reference, PostedAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var rc Receipt
	v.Get(&rc)
	if rc.PostingRef != pp.Reference || rc.QueryID != "Q777" || rc.Amount != 3000 || len(rc.Allocations) != 2 || !rc.PostedAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("receipt %+v", rc)
	}
	// Posted: a refund is refused before anything is sent.
	_, err = f.env.ExecuteActivity(f.a.Refund, RefundRequest{OrderID: orderID, Attempt: 1, TxnTime: now, Reason: "x"})
	refusedAs(t, err, ErrTypeIllegalTransition, "posted")
	if len(f.gw.refunds) != 0 {
		t.Fatal("a posted payment was refunded")
	}
}

func TestPostPrepay(t *testing.T) {
	f := newPayFixture(t)
	f.paidPayment(t, "prepay")
	if _, err := f.env.ExecuteActivity(f.a.PostToPlatform, OrderIDFor(testWorkflowID)); err != nil {
		t.Fatal(err)
	}
	if pp := f.plat.posts[0]; !pp.Prepaid || len(pp.Allocations) != 0 || pp.Amount != 3000 {
		t.Fatalf("posted %+v", pp)
	}
}

func TestRefund(t *testing.T) {
	f := newPayFixture(t)
	f.paidPayment(t, "bills")
	orderID := OrderIDFor(testWorkflowID)
	cases := []struct {
		answer unionpay.Accepted
		want   string
	}{
		{unionpay.Accepted{RespCode: "00", Outcome: unionpay.Unknown}, RefundAccepted},
		{unionpay.Accepted{RespCode: "12", Outcome: unionpay.Failed}, RefundAccepted}, // a duplicate: sent before
		{unionpay.Accepted{RespCode: "03", Outcome: unionpay.Unknown}, RefundUnknown},
		{unionpay.Accepted{RespCode: "01", RespMsg: "refused", Outcome: unionpay.Failed}, RefundRefused},
	}
	for _, c := range cases {
		f.gw.answer = c.answer
		f.rec.calls = nil
		v, err := f.env.ExecuteActivity(f.a.Refund, RefundRequest{OrderID: orderID, Attempt: 1, TxnTime: now.Add(time.Hour), Reason: "bill settled"})
		if err != nil {
			t.Fatal(err)
		}
		var ans RefundAnswer
		v.Get(&ans)
		if ans.Result != c.want || ans.RefundOrderID != RefundOrderIDFor(orderID, 1) {
			t.Fatalf("answer %s: %+v", c.answer.RespCode, ans)
		}
		// The attempt is recorded before it is sent.
		if i := strings.Index(strings.Join(f.rec.calls, ","), "MarkRefunding"); i < 0 {
			t.Fatalf("calls %v", f.rec.calls)
		}
	}
	last := f.gw.refunds[len(f.gw.refunds)-1]
	if last.OrderID != RefundOrderIDFor(orderID, 1) || last.OrigQueryID != "Q777" || last.Amount != 3000 || !last.TxnTime.Equal(now.Add(time.Hour)) ||
		last.BackURL != "https://gridpay.test/notify" {
		t.Fatalf("refund request %+v", last)
	}
	p := f.rec.payments[0]
	if p.Status != store.PaymentRefunding || p.RefundOrderID != last.OrderID || p.Reason != "bill settled" {
		t.Fatalf("record %+v", p)
	}
	// A transport failure is retried (not final), and nothing else changes.
	f.gw.err = errors.New("connection reset")
	_, err := f.env.ExecuteActivity(f.a.Refund, RefundRequest{OrderID: orderID, Attempt: 1, TxnTime: now.Add(time.Hour)})
	var app *temporal.ApplicationError
	if err == nil || errors.As(err, &app) && app.NonRetryable() {
		t.Fatalf("transport failure: %v", err)
	}
	f.gw.err = nil
	v, err := f.env.ExecuteActivity(f.a.MarkRefunded, RefundedRequest{OrderID: orderID, RefundOrderID: last.OrderID, QueryID: "RQ1"})
	if err != nil {
		t.Fatal(err)
	}
	var done store.Payment
	v.Get(&done)
	if done.Status != store.PaymentRefunded || done.RefundQueryID != "RQ1" || done.RefundedAt == nil {
		t.Fatalf("refunded %+v", done)
	}
}

func TestMarkRejectedAndExpired(t *testing.T) {
	f := newPayFixture(t)
	v, err := f.env.ExecuteActivity(f.a.MarkRejected, Rejection{CustomerID: "C1", TokenSerial: "T1", CertSerial: "ab01", IdempotencyKey: "key-0000000000000001",
		Kind: "bills", BillIDs: []string{"B3"}, Amount: 500, Reason: "bill B3 is already settled"})
	if err != nil {
		t.Fatal(err)
	}
	var p store.Payment
	v.Get(&p)
	if p.Status != store.PaymentRejected || p.Reason != "bill B3 is already settled" || p.WorkflowID != testWorkflowID {
		t.Fatalf("rejected %+v", p)
	}
	// A payment with an order cannot be rejected.
	if _, err := f.env.ExecuteActivity(f.a.CreateOrder, newOrder()); err != nil {
		t.Fatal(err)
	}
	_, err = f.env.ExecuteActivity(f.a.MarkRejected, Rejection{CustomerID: "C1", IdempotencyKey: "7f3c2a9e-1b4d-4c8a", Kind: "bills", Amount: 3000, Reason: "late"})
	refusedAs(t, err, ErrTypeIllegalTransition, "")
	if _, err := f.env.ExecuteActivity(f.a.MarkExpired, ExpireRequest{OrderID: OrderIDFor(testWorkflowID), Reason: "not paid"}); err != nil {
		t.Fatal(err)
	}
	_, err = f.env.ExecuteActivity(f.a.PostToPlatform, OrderIDFor(testWorkflowID))
	refusedAs(t, err, ErrTypeIllegalTransition, "expired")
}

func TestFindAndLoadPayment(t *testing.T) {
	f := newPayFixture(t)
	v, err := f.env.ExecuteActivity(f.a.FindPayment, FindPayment{CustomerID: "C1", IdempotencyKey: "7f3c2a9e-1b4d-4c8a"})
	var found FoundPayment
	if err != nil || v.Get(&found) != nil || found.Found {
		t.Fatalf("nothing recorded yet: %+v %v", found, err)
	}
	f.env.ExecuteActivity(f.a.CreateOrder, newOrder())
	v, _ = f.env.ExecuteActivity(f.a.FindPayment, FindPayment{CustomerID: "C1", IdempotencyKey: "7f3c2a9e-1b4d-4c8a"})
	if v.Get(&found); !found.Found || found.Payment.OrderID != OrderIDFor(testWorkflowID) {
		t.Fatalf("found %+v", found)
	}
	_, err = f.env.ExecuteActivity(f.a.LoadPayment, "GPnosuchorder000")
	refusedAs(t, err, "NotFound", "GPnosuchorder000")
}

func TestNoteTokenUnbound(t *testing.T) {
	f := newPayFixture(t)
	if _, err := f.env.ExecuteActivity(f.a.NoteTokenUnbound, UnboundNote{CustomerID: "C1", TokenSerial: "T1", OrderID: "GP1", Status: "awaiting_payment", Why: "lost "}); err != nil {
		t.Fatal(err)
	}
	a := f.rec.audits[0]
	if a.Action != "payment.token_unbound" || a.Subject != testWorkflowID || a.Detail["why"] != "lost" || a.Detail["status"] != "awaiting_payment" {
		t.Fatalf("audit %+v", a)
	}
}

func TestQueryOrderPassesTheAnswerThrough(t *testing.T) {
	f := newPayFixture(t)
	f.gw.query = unionpay.QueryResult{RespCode: "00", OrigRespCode: "04", Outcome: unionpay.Unknown, Amount: money.Fen(3000)}
	v, err := f.env.ExecuteActivity(f.a.QueryOrder, OrderQuery{OrderID: "GP12345678", TxnTime: now})
	var r unionpay.QueryResult
	if err != nil || v.Get(&r) != nil || r.OrigRespCode != "04" || r.Outcome != unionpay.Unknown || r.OrderID != "GP12345678" {
		t.Fatalf("query %+v %v", r, err)
	}
}

// The real adapters satisfy the interfaces the activities declare.
var (
	_ PaymentGateway  = (*unionpay.Client)(nil)
	_ PaymentPlatform = platform.Service(nil)
	_ PaymentRecords  = store.Payments{}
)
