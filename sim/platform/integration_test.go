//go:build integration

package simplatform_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	simplatform "github.com/gridpay/gridpay/sim/platform"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// seedToday is the business date of the tests' data.
const seedToday = "2026-11-21"

var testSeed = simplatform.SeedOptions{Customers: 40, Months: 24, Seed: 7, Today: seedToday}

// clock is the simulator's "today", movable by tests.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(date string) *clock {
	c := &clock{}
	c.set(date)
	return c
}

func (c *clock) set(date string) {
	t, err := time.ParseInLocation(time.DateOnly, date, platform.Shanghai)
	if err != nil {
		panic(err)
	}
	t = t.Add(12 * time.Hour)
	c.t.Store(&t)
}

func (c *clock) today() time.Time { return *c.t.Load() }

// env is a running simulator with seeded data and GridPay's PKI.
type env struct {
	srv    *simplatform.Server
	ca     *servicesCA
	client *platform.Client // as the gateway
	logs   *observer.ObservedLogs
	clock  *clock
	ctx    context.Context
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ca := newServicesCA(t, "GridPay")
	core, logs := observer.New(zap.DebugLevel)
	clk := newClock(seedToday)
	start := time.Now()
	srv, err := simplatform.Start(ctx, simplatform.Options{
		DSN:       testenv.NewDatabase(t),
		StateDir:  t.TempDir(),
		ClientCAs: ca.pool(),
		Today:     clk.today,
		Logger:    zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	report, err := srv.Seed(ctx, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("simulator started and seeded (%d customers, %d bills, %d payments) in %v",
		report.Customers, report.Bills, report.Payments, time.Since(start).Round(time.Millisecond))
	e := &env{srv: srv, ca: ca, logs: logs, clock: clk, ctx: ctx}
	e.client = e.clientAs(t, ca.cert(t, "gateway"))
	return e
}

// clientAs makes a platform client presenting cert (nil: none) that trusts
// the simulator's CA file, as GridPay's configuration does.
func (e *env) clientAs(t *testing.T, cert *tls.Certificate) *platform.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: e.srv.RootCAs(), MinVersion: tls.VersionTLS13}
	if cert != nil {
		// Always present it, as a client with a key in the HSM does.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	c, err := platform.NewClient(e.srv.URL(), cfg, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func (e *env) find(t *testing.T, f simplatform.Find) string {
	t.Helper()
	ids, err := e.srv.FindCustomers(e.ctx, f, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 {
		t.Fatalf("the seeded data has no customer matching %+v", f)
	}
	return ids[0]
}

// servicesCA is GridPay's services CA, made in memory with pki.
type servicesCA struct{ ca *pki.CA }

func newServicesCA(t *testing.T, name string) *servicesCA {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootCert, err := pki.NewRoot(rootKey, pki.RootOptions{CommonName: name + " Root CA", Organization: "GridPay"})
	if err != nil {
		t.Fatal(err)
	}
	root, err := pki.NewCA(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := pki.NewIssuing(root, k.Public(), pki.IssuingOptions{CommonName: name + " Services CA", Role: pki.RoleServices})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA(cert, k)
	if err != nil {
		t.Fatal(err)
	}
	return &servicesCA{ca: ca}
}

func (s *servicesCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ca.Cert)
	return p
}

func (s *servicesCA) cert(t *testing.T, service string) *tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, err := s.ca.IssueService(k.Public(), pki.ServiceRequest{Name: service})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{c.Raw, s.ca.Cert.Raw}, PrivateKey: k, Leaf: c}
}

func mustEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s over HTTPS differs from the database:\n got  %+v\n want %+v", what, got, want)
	}
}

// TestEveryReadMethod calls every read method through the client over
// mutual TLS and compares with the simulator's own answer.
func TestEveryReadMethod(t *testing.T) {
	e := setup(t)
	ctx, c, direct := e.ctx, e.client, e.srv.Service()
	id := e.find(t, simplatform.Find{Overdue: true, Prepaid: false})

	cust, err := c.Customer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := direct.Customer(ctx, id)
	mustEqual(t, "Customer", cust, want)
	if cust.ID != id || cust.Name == "" || cust.AccountNumber == "" || cust.VoltageGrade == "" {
		t.Errorf("customer %+v", cust)
	}

	mps, err := c.MeteringPoints(ctx, id)
	if err != nil || len(mps) == 0 {
		t.Fatalf("MeteringPoints: %v, %v", mps, err)
	}
	wantMPs, _ := direct.MeteringPoints(ctx, id)
	mustEqual(t, "MeteringPoints", mps, wantMPs)

	cons, err := c.Consumption(ctx, id, "2026-01", "2026-10")
	if err != nil || len(cons) != 10*len(mps) {
		t.Fatalf("Consumption of 10 months × %d points: %d records, %v", len(mps), len(cons), err)
	}
	wantCons, _ := direct.Consumption(ctx, id, "2026-01", "2026-10")
	mustEqual(t, "Consumption", cons, wantCons)
	if cons[0].Period != "2026-01" || cons[len(cons)-1].Period != "2026-10" {
		t.Errorf("consumption from %s to %s", cons[0].Period, cons[len(cons)-1].Period)
	}

	all, err := c.Bills(ctx, id, platform.BillFilter{})
	if err != nil || len(all) != testSeed.Months {
		t.Fatalf("Bills: %d, %v", len(all), err)
	}
	wantAll, _ := direct.Bills(ctx, id, platform.BillFilter{Status: "all"})
	mustEqual(t, "Bills", all, wantAll)
	unpaid, err := c.Bills(ctx, id, platform.BillFilter{Status: "unpaid"})
	if err != nil || len(unpaid) == 0 {
		t.Fatalf("unpaid bills of a customer in arrears: %v, %v", unpaid, err)
	}
	for _, b := range unpaid {
		if b.Status == platform.BillSettled || b.AmountDue <= 0 {
			t.Errorf("unpaid filter returned %+v", b)
		}
	}
	ranged, err := c.Bills(ctx, id, platform.BillFilter{From: "2026-03", To: "2026-05"})
	if err != nil || len(ranged) != 3 || ranged[0].Period != "2026-03" {
		t.Errorf("bills 2026-03..05: %v, %v", ranged, err)
	}

	one, err := c.Bill(ctx, id, unpaid[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "Bill", one, unpaid[0])

	arr, err := c.Arrears(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	wantArr, _ := direct.Arrears(ctx, id)
	mustEqual(t, "Arrears", arr, wantArr)
	if arr.OverdueBills == 0 || arr.Total <= 0 || arr.LateFees <= 0 || arr.OldestDueDate == "" {
		t.Errorf("arrears of a customer in arrears: %+v", arr)
	}
	var sum money.Fen
	for _, b := range arr.Bills {
		if b.Status != platform.BillOverdue || b.LateFee <= 0 {
			t.Errorf("arrears bill %+v", b)
		}
		sum += b.AmountDue
	}
	if sum != arr.Total {
		t.Errorf("arrears total %d, bills sum to %d", arr.Total, sum)
	}

	pays, err := c.Payments(ctx, id, "", "")
	if err != nil || len(pays) == 0 {
		t.Fatalf("Payments: %v, %v", pays, err)
	}
	wantPays, _ := direct.Payments(ctx, id, "", "")
	mustEqual(t, "Payments", pays, wantPays)
	for i := 1; i < len(pays); i++ {
		if pays[i].PaidAt.After(pays[i-1].PaidAt) {
			t.Fatal("payments are not newest first")
		}
	}
	day := platform.DateOf(pays[0].PaidAt)
	sameDay, err := c.Payments(ctx, id, day, day)
	if err != nil || len(sameDay) == 0 || platform.DateOf(sameDay[0].PaidAt) != day {
		t.Errorf("payments on %s: %v, %v", day, sameDay, err)
	}
	p, err := c.Payment(ctx, pays[0].Reference)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "Payment", p, pays[0])

	acct, err := c.PrepaidAccount(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	wantAcct, _ := direct.PrepaidAccount(ctx, id)
	mustEqual(t, "PrepaidAccount", acct, wantAcct)

	// Unknown customers and malformed parameters.
	for name, err := range map[string]error{
		"Customer":       second(c.Customer(ctx, "C99999999")),
		"MeteringPoints": second(c.MeteringPoints(ctx, "C99999999")),
		"Consumption":    second(c.Consumption(ctx, "C99999999", "", "")),
		"Bills":          second(c.Bills(ctx, "C99999999", platform.BillFilter{})),
		"Bill":           second(c.Bill(ctx, "C99999999", unpaid[0].ID)),
		"Arrears":        second(c.Arrears(ctx, "C99999999")),
		"Payments":       second(c.Payments(ctx, "C99999999", "", "")),
		"PrepaidAccount": second(c.PrepaidAccount(ctx, "C99999999")),
	} {
		if !errors.Is(err, platform.ErrUnknownCustomer) || platform.Retryable(err) {
			t.Errorf("%s of an unknown customer: %v", name, err)
		}
	}
	for name, err := range map[string]error{
		"bad period":     second(c.Consumption(ctx, id, "2026-13", "")),
		"reversed range": second(c.Bills(ctx, id, platform.BillFilter{From: "2026-05", To: "2026-01"})),
		"bad status":     second(c.Bills(ctx, id, platform.BillFilter{Status: "paid"})),
		"bad date":       second(c.Payments(ctx, id, "2026-02-30", "")),
	} {
		if !errors.Is(err, platform.ErrInvalidRequest) {
			t.Errorf("%s: %v, want invalid_request", name, err)
		}
	}
	if _, err := c.Payment(ctx, "NO-SUCH-REF"); !errors.Is(err, platform.ErrNotFound) {
		t.Errorf("unknown payment: %v", err)
	}
	if _, err := c.PrepaidEntry(ctx, "NO-SUCH-KEY"); !errors.Is(err, platform.ErrNotFound) {
		t.Errorf("unknown prepaid entry: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }

func TestOtherCustomersBillIsNotFound(t *testing.T) {
	e := setup(t)
	ctx, c := e.ctx, e.client
	ids, err := e.srv.FindCustomers(ctx, simplatform.Find{Open: true}, 2)
	if err != nil || len(ids) < 2 {
		t.Fatalf("two customers with open bills: %v, %v", ids, err)
	}
	mine, theirs := ids[0], ids[1]
	bills, err := c.Bills(ctx, theirs, platform.BillFilter{Status: "open"})
	if err != nil || len(bills) == 0 {
		t.Fatal(err)
	}
	_, err = c.Bill(ctx, mine, bills[0].ID)
	if !errors.Is(err, platform.ErrBillNotFound) {
		t.Errorf("another customer's bill: %v, want bill_not_found", err)
	}
	_, errMissing := c.Bill(ctx, mine, "B000000000000")
	var a, b *platform.Error
	errors.As(err, &a)
	errors.As(errMissing, &b)
	if a == nil || b == nil || a.Code != b.Code {
		t.Errorf("another's bill (%v) and a missing bill (%v) must look alike", err, errMissing)
	}
	// Nor can a payment of mine settle their bill.
	_, err = c.PostPayment(ctx, platform.PostPayment{
		Reference: "T-OTHERS-BILL", CustomerID: mine, Amount: bills[0].AmountDue,
		Allocations: []platform.Allocation{{BillID: bills[0].ID, Amount: bills[0].AmountDue}},
		Channel:     "unionpay", ChannelTxnID: "Q1", PaidAt: time.Now(),
	})
	if !errors.Is(err, platform.ErrBillNotFound) {
		t.Errorf("paying another customer's bill: %v, want bill_not_found", err)
	}
	if after, _ := c.Bill(ctx, theirs, bills[0].ID); after.AmountDue != bills[0].AmountDue {
		t.Error("their bill changed")
	}
}

// payFull makes a posting paying a bill's whole amount due.
func payFull(ref string, b platform.Bill) platform.PostPayment {
	return platform.PostPayment{
		Reference: ref, CustomerID: b.CustomerID, Amount: b.AmountDue,
		Allocations: []platform.Allocation{{BillID: b.ID, Amount: b.AmountDue}},
		Channel:     "unionpay", ChannelTxnID: "Q-" + ref, PaidAt: time.Date(2026, 11, 21, 2, 30, 0, 123456789, time.UTC),
	}
}

func openBill(t *testing.T, e *env, f simplatform.Find, status string) platform.Bill {
	t.Helper()
	id := e.find(t, f)
	bills, err := e.client.Bills(e.ctx, id, platform.BillFilter{Status: status})
	if err != nil || len(bills) == 0 {
		t.Fatalf("%s bills of %s: %v, %v", status, id, bills, err)
	}
	return bills[0]
}

func TestIdempotentPosting(t *testing.T) {
	e := setup(t)
	ctx, c := e.ctx, e.client
	bill := openBill(t, e, simplatform.Find{Open: true}, "open")

	post := payFull("UP-IDEM-1", bill)
	first, err := c.PostPayment(ctx, post)
	if err != nil {
		t.Fatal(err)
	}
	if first.Status != platform.PaymentPosted || first.Amount != bill.AmountDue || first.Reference != post.Reference ||
		!first.PaidAt.Equal(post.PaidAt.Truncate(time.Microsecond)) || len(first.Allocations) != 1 {
		t.Errorf("posting %+v", first)
	}
	again, err := c.PostPayment(ctx, post)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	mustEqual(t, "replayed posting", again, first)
	settled, _ := c.Bill(ctx, bill.CustomerID, bill.ID)
	if settled.Status != platform.BillSettled || settled.Paid != bill.AmountDue || settled.AmountDue != 0 {
		t.Errorf("bill after one posting and a replay: %+v", settled)
	}

	// Same reference, other content: conflict, nothing moves.
	changed := post
	changed.Amount--
	changed.Allocations = []platform.Allocation{{BillID: bill.ID, Amount: changed.Amount}}
	if _, err := c.PostPayment(ctx, changed); !errors.Is(err, platform.ErrConflict) || platform.Retryable(err) {
		t.Errorf("same reference, other amount: %v, want conflict", err)
	}
	other := post
	other.ChannelTxnID = "Q-OTHER"
	if _, err := c.PostPayment(ctx, other); !errors.Is(err, platform.ErrConflict) {
		t.Errorf("same reference, other channel transaction: %v, want conflict", err)
	}

	// Ten identical posts at once: one posting. The pause after the key
	// lookup makes them overlap for sure.
	bill2 := openBill(t, e, simplatform.Find{Overdue: true}, "overdue")
	post2 := payFull("UP-IDEM-CONCURRENT", bill2)
	defer simplatform.WidenRaceWindow(20 * time.Millisecond)()
	var wg sync.WaitGroup
	results := make([]platform.Payment, 10)
	errs := make([]error, 10)
	start := make(chan struct{})
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = c.PostPayment(ctx, post2)
		}()
	}
	close(start)
	wg.Wait()
	for i := range 10 {
		if errs[i] != nil {
			t.Fatalf("concurrent post %d: %v", i, errs[i])
		}
		mustEqual(t, fmt.Sprintf("concurrent post %d", i), results[i], results[0])
	}
	after, _ := c.Bill(ctx, bill2.CustomerID, bill2.ID)
	if after.Paid-bill2.Paid != bill2.AmountDue || after.Status != platform.BillSettled {
		t.Errorf("after 10 concurrent posts of %d: paid went from %d to %d", bill2.AmountDue, bill2.Paid, after.Paid)
	}
	pays, _ := c.Payments(ctx, bill2.CustomerID, "", "")
	n := 0
	for _, p := range pays {
		if p.Reference == post2.Reference {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d postings of %s, want 1", n, post2.Reference)
	}
}

func TestAllocationRules(t *testing.T) {
	e := setup(t)
	ctx, c := e.ctx, e.client
	bill := openBill(t, e, simplatform.Find{Overdue: true}, "overdue")
	settled := openBill(t, e, simplatform.Find{}, "settled")

	over := payFull("UP-OVER", bill)
	over.Amount++
	over.Allocations[0].Amount++
	if _, err := c.PostPayment(ctx, over); !errors.Is(err, platform.ErrAmountMismatch) {
		t.Errorf("allocation above the amount due: %v, want amount_mismatch", err)
	}
	sum := payFull("UP-SUM", bill)
	sum.Amount++
	if _, err := c.PostPayment(ctx, sum); !errors.Is(err, platform.ErrAmountMismatch) {
		t.Errorf("allocations not summing to the amount: %v, want amount_mismatch", err)
	}
	paidElsewhere := payFull("UP-SETTLED", settled)
	paidElsewhere.Amount, paidElsewhere.Allocations[0].Amount = 100, 100
	paidElsewhere.CustomerID = settled.CustomerID
	if _, err := c.PostPayment(ctx, paidElsewhere); !errors.Is(err, platform.ErrAlreadySettled) || platform.Retryable(err) {
		t.Errorf("paying a settled bill: %v, want already_settled", err)
	}
	for name, p := range map[string]platform.PostPayment{
		"no allocations":      {Reference: "UP-X1", CustomerID: bill.CustomerID, Amount: 100, Channel: "unionpay", PaidAt: time.Now()},
		"prepaid with a bill": {Reference: "UP-X2", CustomerID: bill.CustomerID, Amount: 100, Prepaid: true, Allocations: []platform.Allocation{{BillID: bill.ID, Amount: 100}}, Channel: "unionpay", PaidAt: time.Now()},
		"zero amount":         {Reference: "UP-X3", CustomerID: bill.CustomerID, Amount: 0, Allocations: []platform.Allocation{{BillID: bill.ID, Amount: 0}}, Channel: "unionpay", PaidAt: time.Now()},
		"no channel":          {Reference: "UP-X4", CustomerID: bill.CustomerID, Amount: 100, Allocations: []platform.Allocation{{BillID: bill.ID, Amount: 100}}, PaidAt: time.Now()},
		"bad reference":       {Reference: "UP X5", CustomerID: bill.CustomerID, Amount: 100, Allocations: []platform.Allocation{{BillID: bill.ID, Amount: 100}}, Channel: "unionpay", PaidAt: time.Now()},
	} {
		if _, err := c.PostPayment(ctx, p); !errors.Is(err, platform.ErrInvalidRequest) {
			t.Errorf("%s: %v, want invalid_request", name, err)
		}
	}
	if _, err := c.PostPayment(ctx, platform.PostPayment{Reference: "UP-X6", CustomerID: "C99999999", Amount: 100,
		Allocations: []platform.Allocation{{BillID: bill.ID, Amount: 100}}, Channel: "unionpay", PaidAt: time.Now()}); !errors.Is(err, platform.ErrUnknownCustomer) {
		t.Errorf("unknown customer: %v", err)
	}
	if after, _ := c.Bill(ctx, bill.CustomerID, bill.ID); !reflect.DeepEqual(after, bill) {
		t.Errorf("refused postings changed the bill: %+v → %+v", bill, after)
	}

	// A part payment is fine and leaves the rest due.
	part := payFull("UP-PART", bill)
	part.Amount, part.Allocations[0].Amount = bill.AmountDue/2, bill.AmountDue/2
	if _, err := c.PostPayment(ctx, part); err != nil {
		t.Fatal(err)
	}
	after, _ := c.Bill(ctx, bill.CustomerID, bill.ID)
	if after.AmountDue != bill.AmountDue-part.Amount || after.Status != platform.BillOverdue {
		t.Errorf("after a part payment: %+v", after)
	}
}

func TestReversal(t *testing.T) {
	e := setup(t)
	ctx, c := e.ctx, e.client
	bill := openBill(t, e, simplatform.Find{Overdue: true}, "overdue")
	before, _ := c.Arrears(ctx, bill.CustomerID)

	p, err := c.PostPayment(ctx, payFull("UP-REV-1", bill))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Bill(ctx, bill.CustomerID, bill.ID); b.Status != platform.BillSettled {
		t.Fatalf("bill not settled by its payment: %+v", b)
	}
	r, err := c.ReversePayment(ctx, p.Reference, "refunded to the payer")
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != platform.PaymentReversed || r.ReversedAt == nil || r.ReverseNote != "refunded to the payer" || r.Amount != p.Amount {
		t.Errorf("reversed payment %+v", r)
	}
	restored, _ := c.Bill(ctx, bill.CustomerID, bill.ID)
	mustEqual(t, "bill after reversal", restored, bill)
	after, _ := c.Arrears(ctx, bill.CustomerID)
	mustEqual(t, "arrears after reversal", after, before)

	again, err := c.ReversePayment(ctx, p.Reference, "another note")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "second reversal", again, r)
	if got, _ := c.Payment(ctx, p.Reference); got.Status != platform.PaymentReversed {
		t.Errorf("payment after reversal: %+v", got)
	}
	// A reversed reference stays used: posting it again is a replay of the
	// reversed payment, not a new posting.
	if replay, err := c.PostPayment(ctx, payFull("UP-REV-1", bill)); err != nil || replay.Status != platform.PaymentReversed {
		t.Errorf("reposting a reversed reference: %+v, %v", replay, err)
	}
	if _, err := c.ReversePayment(ctx, "NO-SUCH-REF", ""); !errors.Is(err, platform.ErrNotFound) {
		t.Errorf("reversing an unknown payment: %v", err)
	}
}

func TestPrepaid(t *testing.T) {
	e := setup(t)
	ctx, c := e.ctx, e.client
	id := e.find(t, simplatform.Find{})
	start, err := c.PrepaidAccount(ctx, id)
	if err != nil {
		t.Fatal(err)
	}

	credit, err := c.CreditPrepaid(ctx, id, "T-CREDIT-1", 50_000, "refund of load 7")
	if err != nil {
		t.Fatal(err)
	}
	if credit.Amount != 50_000 || credit.BalanceAfter != start.Balance+50_000 || credit.Key != "T-CREDIT-1" || credit.CustomerID != id {
		t.Errorf("credit %+v", credit)
	}
	again, err := c.CreditPrepaid(ctx, id, "T-CREDIT-1", 50_000, "refund of load 7")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "repeated credit", again, credit)
	if _, err := c.CreditPrepaid(ctx, id, "T-CREDIT-1", 40_000, "refund of load 7"); !errors.Is(err, platform.ErrConflict) {
		t.Errorf("key reused with another amount: %v", err)
	}
	if _, err := c.DebitPrepaid(ctx, id, "T-CREDIT-1", 50_000, "refund of load 7"); !errors.Is(err, platform.ErrConflict) {
		t.Errorf("credit key reused for a debit: %v", err)
	}
	acct, _ := c.PrepaidAccount(ctx, id)
	if acct.Balance != start.Balance+50_000 {
		t.Fatalf("balance %d after one credit (and a replay), want %d", acct.Balance, start.Balance+50_000)
	}

	if _, err := c.DebitPrepaid(ctx, id, "T-DEBIT-BIG", acct.Balance+1, "load"); !errors.Is(err, platform.ErrInsufficientFunds) || platform.Retryable(err) {
		t.Errorf("debit above the balance: %v, want insufficient_funds", err)
	}
	if _, err := c.PrepaidEntry(ctx, "T-DEBIT-BIG"); !errors.Is(err, platform.ErrNotFound) {
		t.Errorf("a refused debit left an entry: %v", err)
	}
	debit, err := c.DebitPrepaid(ctx, id, "T-DEBIT-1", 30_000, "load onto key")
	if err != nil {
		t.Fatal(err)
	}
	if debit.Amount != -30_000 || debit.BalanceAfter != acct.Balance-30_000 {
		t.Errorf("debit %+v", debit)
	}
	if d2, err := c.DebitPrepaid(ctx, id, "T-DEBIT-1", 30_000, "load onto key"); err != nil || !reflect.DeepEqual(d2, debit) {
		t.Errorf("repeated debit: %+v, %v", d2, err)
	}
	got, err := c.PrepaidEntry(ctx, "T-DEBIT-1")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "PrepaidEntry", got, debit)
	if _, err := c.CreditPrepaid(ctx, "C99999999", "T-CREDIT-X", 100, ""); !errors.Is(err, platform.ErrUnknownCustomer) {
		t.Errorf("credit to an unknown customer: %v", err)
	}

	// Concurrent debits with distinct keys never overdraw.
	restore := simplatform.WidenRaceWindow(20 * time.Millisecond)
	acct, _ = c.PrepaidAccount(ctx, id)
	each := acct.Balance/3 + 1 // only two of the ten can succeed
	var wg sync.WaitGroup
	var okCount, insufficient atomic.Int32
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.DebitPrepaid(ctx, id, fmt.Sprintf("T-RACE-%d", i), each, "race")
			switch {
			case err == nil:
				okCount.Add(1)
			case errors.Is(err, platform.ErrInsufficientFunds):
				insufficient.Add(1)
			default:
				t.Errorf("debit %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	restore()
	final, _ := c.PrepaidAccount(ctx, id)
	if okCount.Load() != 2 || insufficient.Load() != 8 || final.Balance != acct.Balance-2*each || final.Balance < 0 {
		t.Errorf("10 concurrent debits of %d from %d: %d ok, %d refused, balance %d", each, acct.Balance, okCount.Load(), insufficient.Load(), final.Balance)
	}

	// A top-up by payment credits the account; its reversal takes it back,
	// unless it was spent.
	topUp := platform.PostPayment{Reference: "UP-TOPUP-1", CustomerID: id, Amount: 200_000, Prepaid: true,
		Channel: "unionpay", ChannelTxnID: "Q-T1", PaidAt: time.Now()}
	if _, err := c.PostPayment(ctx, topUp); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.PrepaidAccount(ctx, id); a.Balance != final.Balance+200_000 {
		t.Errorf("balance after a top-up: %d, want %d", a.Balance, final.Balance+200_000)
	}
	if _, err := c.PostPayment(ctx, topUp); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.PrepaidAccount(ctx, id); a.Balance != final.Balance+200_000 {
		t.Errorf("a replayed top-up credited again: %d", a.Balance)
	}
	if _, err := c.ReversePayment(ctx, topUp.Reference, "refund"); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.PrepaidAccount(ctx, id); a.Balance != final.Balance {
		t.Errorf("balance after reversing the top-up: %d, want %d", a.Balance, final.Balance)
	}
	spent := topUp
	spent.Reference, spent.ChannelTxnID = "UP-TOPUP-2", "Q-T2"
	if _, err := c.PostPayment(ctx, spent); err != nil {
		t.Fatal(err)
	}
	a, _ := c.PrepaidAccount(ctx, id)
	if _, err := c.DebitPrepaid(ctx, id, "T-SPEND", a.Balance, "load everything"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReversePayment(ctx, spent.Reference, "refund"); !errors.Is(err, platform.ErrInsufficientFunds) {
		t.Errorf("reversing a spent top-up: %v, want insufficient_funds", err)
	}
	if p, _ := c.Payment(ctx, spent.Reference); p.Status != platform.PaymentPosted {
		t.Errorf("a refused reversal changed the payment: %+v", p)
	}
}

// TestLateFeesFollowToday moves the simulator's clock and watches the fee.
func TestLateFeesFollowToday(t *testing.T) {
	e := setup(t)
	ctx, c := e.ctx, e.client
	bill := openBill(t, e, simplatform.Find{Open: true}, "open")
	unpaidCharges := bill.EnergyCharge + bill.BasicCharge - bill.Paid
	if bill.LateFee != 0 || bill.DueDate != "2026-11-25" {
		t.Fatalf("open bill %+v", bill)
	}
	perDay := func(permille int64) money.Fen { return money.Fen((int64(unpaidCharges)*permille + 500) / 1000) }

	e.clock.set("2026-11-25")
	if b, _ := c.Bill(ctx, bill.CustomerID, bill.ID); b.Status != platform.BillOpen || b.LateFee != 0 {
		t.Errorf("on the due date: %+v", b)
	}
	e.clock.set("2026-11-26")
	b, _ := c.Bill(ctx, bill.CustomerID, bill.ID)
	if b.Status != platform.BillOverdue || b.LateFee != max(perDay(2), 100) {
		t.Errorf("first overdue day: status %s fee %d, want overdue %d", b.Status, b.LateFee, max(perDay(2), 100))
	}
	// Nov 26–Dec 31: 36 days at 2‰; Jan 1–3: 3 days at 3‰.
	e.clock.set("2027-01-03")
	b, _ = c.Bill(ctx, bill.CustomerID, bill.ID)
	if want := 36*perDay(2) + 3*perDay(3); b.LateFee != want || b.AmountDue != bill.AmountDue+want {
		t.Errorf("into the next year: fee %d, want %d", b.LateFee, want)
	}
	arr, _ := c.Arrears(ctx, bill.CustomerID)
	found := false
	for _, ab := range arr.Bills {
		found = found || ab.ID == bill.ID
	}
	if !found {
		t.Error("the overdue bill is not in the arrears")
	}
	ids, err := e.srv.FindCustomers(ctx, simplatform.Find{CarriedOver: true}, 0)
	if err != nil || len(ids) == 0 {
		t.Errorf("no customer with carried-over arrears in January: %v", err)
	}

	// Paying it today stops the fee for good.
	if _, err := c.PostPayment(ctx, payFull("UP-LATE", b)); err != nil {
		t.Fatal(err)
	}
	e.clock.set("2027-03-01")
	if late, _ := c.Bill(ctx, bill.CustomerID, bill.ID); late.Status != platform.BillSettled || late.LateFee != b.LateFee {
		t.Errorf("two months after paying with the fee: %+v", late)
	}
}

// refusedAt checks that a client is refused at the TLS handshake and that
// the simulator logged it.
func refusedAt(t *testing.T, e *env, name string, c *platform.Client, reason string) {
	t.Helper()
	before := len(e.logs.FilterMessage("refused TLS client").All())
	_, err := c.Customer(e.ctx, "C31000001")
	if !errors.Is(err, platform.ErrUnavailable) || !platform.Retryable(err) {
		t.Errorf("%s: %v; want unavailable", name, err)
	}
	// Usually the client reads the server's alert; under load it may
	// instead find the connection already closed when it writes its
	// request (TLS 1.3 lets it write before it learns of the refusal).
	// Either way nothing was served; the log check below says why.
	var op *net.OpError
	alert := errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), "tls:")
	closed := errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
	if !alert && !closed {
		t.Errorf("%s: %v is neither a TLS alert from the server nor a closed connection", name, err)
	}
	refusals := e.logs.FilterMessage("refused TLS client").All()
	if len(refusals) <= before {
		t.Errorf("%s: the simulator did not log the refusal", name)
		return
	}
	if r, _ := refusals[len(refusals)-1].ContextMap()["reason"].(string); !strings.Contains(r, reason) {
		t.Errorf("%s: logged reason %q, want %q", name, r, reason)
	}
}

func TestFirewall(t *testing.T) {
	e := setup(t)
	refusedAt(t, e, "service intruder", e.clientAs(t, e.ca.cert(t, "intruder")), `service "intruder" is not admitted`)
	other := newServicesCA(t, "Impostor")
	refusedAt(t, e, "a gateway certificate of another CA", e.clientAs(t, other.cert(t, "gateway")), "not issued by the trusted client CA")
	refusedAt(t, e, "no certificate", e.clientAs(t, nil), "no client certificate")

	// The worker is admitted, like the gateway.
	if _, err := e.clientAs(t, e.ca.cert(t, "worker")).Customer(e.ctx, e.find(t, simplatform.Find{})); err != nil {
		t.Errorf("worker refused: %v", err)
	}
	// Refused clients never reached HTTP: no request was logged for them.
	for _, entry := range e.logs.FilterMessage("request").All() {
		if s := entry.ContextMap()["service"]; s != "gateway" && s != "worker" {
			t.Errorf("a request from %q was served", s)
		}
	}
	// TLS 1.1 is refused too.
	conn, err := tls.Dial("tcp", e.srv.Addr().String(), &tls.Config{RootCAs: e.srv.RootCAs(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
}

func TestUnavailable(t *testing.T) {
	e := setup(t)
	id := e.find(t, simplatform.Find{})
	e.srv.SetUnavailable(true)
	_, err := e.client.Customer(e.ctx, id)
	var pe *platform.Error
	if !errors.Is(err, platform.ErrUnavailable) || !platform.Retryable(err) || !errors.As(err, &pe) || !strings.Contains(pe.Message, "maintenance") {
		t.Errorf("during maintenance: %v; want unavailable, retryable", err)
	}
	if _, err := e.client.PostPayment(e.ctx, payFull("UP-DOWN", platform.Bill{ID: "B1", CustomerID: id, AmountDue: 1})); !errors.Is(err, platform.ErrUnavailable) {
		t.Errorf("posting during maintenance: %v", err)
	}
	// Retry-After on the wire.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.srv.RootCAs(), Certificates: []tls.Certificate{*e.ca.cert(t, "gateway")}}}}
	resp, err := hc.Get(e.srv.URL() + "/v1/customers/" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || resp.Header.Get(platform.RequestIDHeader) == "" {
		t.Errorf("maintenance answer: %d, headers %v", resp.StatusCode, resp.Header)
	}
	e.srv.SetUnavailable(false)
	if _, err := e.client.Customer(e.ctx, id); err != nil {
		t.Errorf("after maintenance: %v", err)
	}
	// Stopped altogether: also unavailable.
	e.srv.Stop()
	if _, err := e.client.Customer(e.ctx, id); !errors.Is(err, platform.ErrUnavailable) || !platform.Retryable(err) {
		t.Errorf("stopped simulator: %v", err)
	}
}

func TestRequestIDsAndStrictBodies(t *testing.T) {
	e := setup(t)
	id := e.find(t, simplatform.Find{})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.srv.RootCAs(), Certificates: []tls.Certificate{*e.ca.cert(t, "gateway")}}}}
	req, _ := http.NewRequest("GET", e.srv.URL()+"/v1/customers/"+id, nil)
	req.Header.Set(platform.RequestIDHeader, "gw-42")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get(platform.RequestIDHeader) != "gw-42" {
		t.Errorf("request ID not echoed: %q", resp.Header.Get(platform.RequestIDHeader))
	}
	logged := false
	for _, entry := range e.logs.FilterMessage("request").All() {
		logged = logged || entry.ContextMap()["request_id"] == "gw-42"
	}
	if !logged {
		t.Error("request ID not logged")
	}
	for name, body := range map[string]string{
		"unknown field":  `{"customer_id":"` + id + `","amount":100,"memo":"","extra":1}`,
		"trailing data":  `{"customer_id":"` + id + `","amount":100,"memo":""} {}`,
		"not JSON":       `amount=100`,
		"empty":          ``,
		"oversize":       `{"customer_id":"` + id + `","amount":100,"memo":"` + strings.Repeat("x", 70_000) + `"}`,
		"zero amount":    `{"customer_id":"` + id + `","amount":0,"memo":""}`,
		"string amount":  `{"customer_id":"` + id + `","amount":"100","memo":""}`,
		"path reference": `{}`,
	} {
		url := e.srv.URL() + "/v1/prepaid-entries/T-BODY"
		if name == "path reference" {
			url = e.srv.URL() + "/v1/payments/UP-A"
			body = `{"reference":"UP-B","customer_id":"` + id + `","amount":1,"prepaid":true,"channel":"x","paid_at":"2026-11-21T00:00:00Z"}`
		}
		req, _ := http.NewRequest("PUT", url, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
		}
	}
	resp, err = hc.Get(e.srv.URL() + "/v2/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("unknown endpoint: %d", resp.StatusCode)
	}
}

func TestSeedIsDeterministicAndReplaces(t *testing.T) {
	e := setup(t)
	ctx := e.ctx
	fingerprint := func() string {
		var parts []string
		ids, err := e.srv.FindCustomers(ctx, simplatform.Find{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			cust, _ := e.srv.Service().Customer(ctx, id)
			bills, _ := e.srv.Service().Bills(ctx, id, platform.BillFilter{})
			pays, _ := e.srv.Service().Payments(ctx, id, "", "")
			parts = append(parts, fmt.Sprintf("%+v%+v%+v", cust, bills, pays))
		}
		return strings.Join(parts, "\n")
	}
	first := fingerprint()
	// Changes, then the same seed again: back to identical data.
	bill := openBill(t, e, simplatform.Find{Open: true}, "open")
	if _, err := e.client.PostPayment(ctx, payFull("UP-SEED", bill)); err != nil {
		t.Fatal(err)
	}
	report, err := e.srv.Seed(ctx, testSeed)
	if err != nil {
		t.Fatal(err)
	}
	if got := fingerprint(); got != first {
		t.Error("seeding again with the same options did not give the same data")
	}
	ds, _ := simplatform.Generate(testSeed)
	if report.Hash != ds.Hash() || report.Customers != testSeed.Customers || report.Bills != testSeed.Customers*testSeed.Months {
		t.Errorf("seed report %+v", report)
	}
	if _, err := e.client.Payment(ctx, "UP-SEED"); !errors.Is(err, platform.ErrNotFound) {
		t.Errorf("a posting survived reseeding: %v", err)
	}
	other := testSeed
	other.Seed = 8
	if _, err := e.srv.Seed(ctx, other); err != nil {
		t.Fatal(err)
	}
	if fingerprint() == first {
		t.Error("another seed gave the same data")
	}
}

func TestFindCustomers(t *testing.T) {
	e := setup(t)
	ctx, c := e.ctx, e.client
	all, err := e.srv.FindCustomers(ctx, simplatform.Find{}, 0)
	if err != nil || len(all) != testSeed.Customers {
		t.Fatalf("all customers: %d, %v", len(all), err)
	}
	check := func(f simplatform.Find, ok func(id string, bills []platform.Bill, a platform.Arrears, p platform.PrepaidAccount) bool) {
		ids, err := e.srv.FindCustomers(ctx, f, 0)
		if err != nil || len(ids) == 0 {
			t.Errorf("%+v: %v, %v", f, ids, err)
			return
		}
		for _, id := range ids {
			bills, _ := c.Bills(ctx, id, platform.BillFilter{})
			a, _ := c.Arrears(ctx, id)
			p, _ := c.PrepaidAccount(ctx, id)
			if !ok(id, bills, a, p) {
				t.Errorf("%+v returned %s, which does not match", f, id)
			}
		}
	}
	check(simplatform.Find{Overdue: true}, func(_ string, _ []platform.Bill, a platform.Arrears, _ platform.PrepaidAccount) bool {
		return a.OverdueBills > 0 && a.Total > 0
	})
	check(simplatform.Find{Open: true}, func(_ string, bills []platform.Bill, _ platform.Arrears, _ platform.PrepaidAccount) bool {
		for _, b := range bills {
			if b.Status == platform.BillOpen {
				return true
			}
		}
		return false
	})
	check(simplatform.Find{AllSettled: true}, func(_ string, bills []platform.Bill, a platform.Arrears, _ platform.PrepaidAccount) bool {
		for _, b := range bills {
			if b.Status != platform.BillSettled {
				return false
			}
		}
		return a.Total == 0
	})
	check(simplatform.Find{Prepaid: true}, func(_ string, _ []platform.Bill, _ platform.Arrears, p platform.PrepaidAccount) bool {
		return p.Balance > 0
	})
	check(simplatform.Find{Type: platform.GeneralCommercial}, func(id string, bills []platform.Bill, _ platform.Arrears, _ platform.PrepaidAccount) bool {
		cust, _ := c.Customer(ctx, id)
		return cust.Type == platform.GeneralCommercial && bills[0].BasicCharge == 0
	})
	check(simplatform.Find{PartlyPaid: true}, func(_ string, bills []platform.Bill, _ platform.Arrears, _ platform.PrepaidAccount) bool {
		for _, b := range bills {
			if b.Status != platform.BillSettled && b.Paid > 0 {
				return true
			}
		}
		return false
	})
}

func TestRestartKeepsItsCA(t *testing.T) {
	ctx := context.Background()
	ca := newServicesCA(t, "GridPay")
	dsn, dir := testenv.NewDatabase(t), t.TempDir()
	opts := simplatform.Options{DSN: dsn, StateDir: dir, ClientCAs: ca.pool()}
	s1, err := simplatform.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	caFile, caCert := s1.CAFile(), s1.CACert()
	if _, err := s1.Seed(ctx, simplatform.SeedOptions{Customers: 3, Months: 2, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	s1.Stop()
	s2, err := simplatform.Start(ctx, opts) // migrations already applied; the CA reused
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Stop()
	if s2.CAFile() != caFile || !s2.CACert().Equal(caCert) {
		t.Error("a restart made a new CA: GridPay's trust in ca.pem would break")
	}
	if ids, err := s2.FindCustomers(ctx, simplatform.Find{}, 0); err != nil || len(ids) != 3 {
		t.Errorf("data after restart: %v, %v", ids, err)
	}
	if _, err := simplatform.Start(ctx, simplatform.Options{DSN: dsn, StateDir: dir}); err == nil {
		t.Error("started without a client CA")
	}
}
