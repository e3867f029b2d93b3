package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
)

// fakePlatform is an in-memory platform.Service with two customers.
// Setting down makes every call fail as unavailable; block makes calls
// wait for their context.
type fakePlatform struct {
	down  atomic.Bool
	block atomic.Bool
	calls atomic.Int64

	customers map[string]platform.Customer
	points    []platform.MeteringPoint
	usage     []platform.Consumption // of C1001
	bills     []platform.Bill
	payments  []platform.Payment
	// leak, when set, makes Bills answer another customer's bills too (a
	// platform breaking its contract).
	leak atomic.Bool
}

var _ platform.Service = (*fakePlatform)(nil)

// fakeToday is the business date the fake's bills are laid out around.
var fakeToday = time.Date(2026, 11, 21, 10, 0, 0, 0, platform.Shanghai)

func newFakePlatform() *fakePlatform {
	f := &fakePlatform{customers: map[string]platform.Customer{
		"C1001": {ID: "C1001", AccountNumber: "622-1001", Name: "Huadong Steel Works", Type: platform.LargeIndustry,
			VoltageGrade: "110kV", ContractCapacityKVA: 31500, ContactName: "Wang Li", ContactPhone: "021-5550100", Address: "1 Gangcheng Road"},
		"C2002": {ID: "C2002", AccountNumber: "622-2002", Name: "Xinhua Mall", Type: platform.GeneralCommercial,
			VoltageGrade: "10kV", ContactName: "Zhao Min", ContactPhone: "021-5550200", Address: "8 Nanjing Road"},
	}}
	f.points = []platform.MeteringPoint{
		{ID: "MP-1001-1", CustomerID: "C1001", MeterNumber: "M0001", Location: "Substation A", Multiplier: 1000},
		{ID: "MP-2002-1", CustomerID: "C2002", MeterNumber: "M0002", Location: "Basement", Multiplier: 40},
	}
	for m := 1; m <= 10; m++ {
		p := platform.Period(time.Date(2026, time.Month(m), 1, 0, 0, 0, 0, time.UTC).Format("2006-01"))
		f.usage = append(f.usage, platform.Consumption{Period: p, MeteringPointID: "MP-1001-1", PeakKWh: 300, FlatKWh: 500, ValleyKWh: 200, TotalKWh: 1000})
	}
	f.bills = []platform.Bill{
		// 50 days overdue: critical.
		{ID: "B-1001-2026-09", CustomerID: "C1001", Period: "2026-09", IssuedOn: "2026-10-01", DueDate: "2026-10-02", KWh: 1000,
			EnergyCharge: 80_000_00, BasicCharge: 20_000_00, LateFee: 1_000_00, AmountDue: 101_000_00, Status: platform.BillOverdue},
		// 6 days overdue: warning.
		{ID: "B-1001-2026-10", CustomerID: "C1001", Period: "2026-10", IssuedOn: "2026-11-01", DueDate: "2026-11-15", KWh: 1000,
			EnergyCharge: 80_000_00, BasicCharge: 20_000_00, LateFee: 120_00, AmountDue: 100_120_00, Status: platform.BillOverdue},
		{ID: "B-1001-2026-08", CustomerID: "C1001", Period: "2026-08", IssuedOn: "2026-09-01", DueDate: "2026-09-15", KWh: 1000,
			EnergyCharge: 80_000_00, BasicCharge: 20_000_00, Paid: 100_000_00, Status: platform.BillSettled},
		{ID: "B-2002-2026-10", CustomerID: "C2002", Period: "2026-10", IssuedOn: "2026-11-01", DueDate: "2026-11-25", KWh: 50,
			EnergyCharge: 40_00, AmountDue: 40_00, Status: platform.BillOpen},
	}
	f.payments = []platform.Payment{
		{Reference: "PAY-1", CustomerID: "C1001", Amount: 100_000_00, Allocations: []platform.Allocation{{BillID: "B-1001-2026-08", Amount: 100_000_00}},
			Channel: "unionpay", ChannelTxnID: "Q1", PaidAt: time.Date(2026, 9, 10, 2, 0, 0, 0, time.UTC), PostedAt: time.Date(2026, 9, 10, 2, 1, 0, 0, time.UTC), Status: platform.PaymentPosted},
	}
	return f
}

func (f *fakePlatform) enter(ctx context.Context) error {
	f.calls.Add(1)
	if f.block.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if f.down.Load() {
		return &platform.Error{Code: platform.CodeUnavailable, Message: "connection refused"}
	}
	return nil
}

func (f *fakePlatform) Customer(ctx context.Context, id string) (platform.Customer, error) {
	if err := f.enter(ctx); err != nil {
		return platform.Customer{}, err
	}
	c, ok := f.customers[id]
	if !ok {
		return platform.Customer{}, &platform.Error{Code: platform.CodeUnknownCustomer, Message: "no customer " + id}
	}
	return c, nil
}

func (f *fakePlatform) MeteringPoints(ctx context.Context, id string) ([]platform.MeteringPoint, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	var out []platform.MeteringPoint
	for _, p := range f.points {
		if p.CustomerID == id {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakePlatform) Consumption(ctx context.Context, id string, from, to platform.Period) ([]platform.Consumption, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	var out []platform.Consumption
	if id != "C1001" {
		return out, nil
	}
	for _, c := range f.usage {
		if c.Period >= from && c.Period <= to {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakePlatform) Bills(ctx context.Context, id string, flt platform.BillFilter) ([]platform.Bill, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	var out []platform.Bill
	for _, b := range f.bills {
		if b.CustomerID != id && !f.leak.Load() {
			continue
		}
		if flt.Status == "unpaid" && b.Status == platform.BillSettled {
			continue
		}
		if flt.From != "" && b.Period < flt.From || flt.To != "" && b.Period > flt.To {
			continue
		}
		out = append(out, b)
	}
	return out, nil
}

func (f *fakePlatform) Bill(ctx context.Context, id, billID string) (platform.Bill, error) {
	if err := f.enter(ctx); err != nil {
		return platform.Bill{}, err
	}
	for _, b := range f.bills {
		if b.ID == billID && b.CustomerID == id {
			return b, nil
		}
	}
	return platform.Bill{}, &platform.Error{Code: platform.CodeBillNotFound, Message: "no bill " + billID}
}

func (f *fakePlatform) Arrears(ctx context.Context, id string) (platform.Arrears, error) {
	bills, err := f.Bills(ctx, id, platform.BillFilter{Status: "unpaid"})
	if err != nil {
		return platform.Arrears{}, err
	}
	a := platform.Arrears{CustomerID: id}
	for _, b := range bills {
		if b.Status != platform.BillOverdue {
			continue
		}
		a.Bills = append(a.Bills, b)
		a.Total += b.AmountDue
		a.LateFees += b.LateFee
		a.OverdueBills++
		if a.OldestDueDate == "" || b.DueDate < a.OldestDueDate {
			a.OldestDueDate = b.DueDate
		}
	}
	return a, nil
}

func (f *fakePlatform) Payments(ctx context.Context, id string, from, to platform.Date) ([]platform.Payment, error) {
	if err := f.enter(ctx); err != nil {
		return nil, err
	}
	var out []platform.Payment
	for _, p := range f.payments {
		d := platform.DateOf(p.PaidAt)
		if p.CustomerID == id && (from == "" || d >= from) && (to == "" || d <= to) {
			out = append(out, p)
		}
	}
	return out, nil
}

var errNotInFake = errors.New("not implemented by the fake platform")

func (f *fakePlatform) Payment(context.Context, string) (platform.Payment, error) {
	return platform.Payment{}, errNotInFake
}
func (f *fakePlatform) PostPayment(context.Context, platform.PostPayment) (platform.Payment, error) {
	return platform.Payment{}, errNotInFake
}
func (f *fakePlatform) ReversePayment(context.Context, string, string) (platform.Payment, error) {
	return platform.Payment{}, errNotInFake
}

// PrepaidAccount: alice (C1001) has 1,234.56 prepaid; others none.
func (f *fakePlatform) PrepaidAccount(_ context.Context, id string) (platform.PrepaidAccount, error) {
	if id != "C1001" {
		return platform.PrepaidAccount{}, platform.ErrNotFound
	}
	return platform.PrepaidAccount{CustomerID: id, Balance: 1234_56, UpdatedAt: fakeToday}, nil
}
func (f *fakePlatform) DebitPrepaid(context.Context, string, string, money.Fen, string) (platform.PrepaidEntry, error) {
	return platform.PrepaidEntry{}, errNotInFake
}
func (f *fakePlatform) CreditPrepaid(context.Context, string, string, money.Fen, string) (platform.PrepaidEntry, error) {
	return platform.PrepaidEntry{}, errNotInFake
}
func (f *fakePlatform) PrepaidEntry(context.Context, string) (platform.PrepaidEntry, error) {
	return platform.PrepaidEntry{}, errNotInFake
}

// fakeVerifier answers per certificate serial what was set for it;
// unknown serials are from an unknown CA.
type fakeVerifier struct {
	mu      sync.Mutex
	results map[string]verifyResult
}

type verifyResult struct {
	id  pki.Identity
	err error
}

func (v *fakeVerifier) set(cert *x509.Certificate, id pki.Identity, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.results == nil {
		v.results = map[string]verifyResult{}
	}
	v.results[pki.SerialHex(cert.SerialNumber)] = verifyResult{id, err}
}

func (v *fakeVerifier) Verify(chain []*x509.Certificate, _ time.Time, usage x509.ExtKeyUsage) (pki.Identity, error) {
	if usage != x509.ExtKeyUsageClientAuth {
		return pki.Identity{}, &pki.VerifyError{Err: pki.ErrWrongUsage}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	r, ok := v.results[pki.SerialHex(chain[0].SerialNumber)]
	if !ok {
		return pki.Identity{}, &pki.VerifyError{Err: pki.ErrUnknownCA, Subject: chain[0].Subject.String(), Serial: chain[0].SerialNumber, Detail: "issued by CN=Elsewhere CA"}
	}
	return r.id, r.err
}

// fakeBindings holds active bindings by certificate serial.
type fakeBindings struct {
	mu  sync.Mutex
	m   map[string]store.Binding
	err error // when set, every lookup fails with it (the database is down)
}

func (b *fakeBindings) bind(cert *x509.Certificate, customerID, tokenSerial string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]store.Binding{}
	}
	serial := pki.SerialHex(cert.SerialNumber)
	b.m[serial] = store.Binding{ID: int64(len(b.m) + 1), CertSerial: serial, CustomerID: customerID, TokenSerial: tokenSerial, Status: store.BindingActive}
}

func (b *fakeBindings) unbind(cert *x509.Certificate) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, pki.SerialHex(cert.SerialNumber))
}

func (b *fakeBindings) ActiveBinding(_ context.Context, serial string) (store.Binding, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return store.Binding{}, b.err
	}
	if bd, ok := b.m[serial]; ok {
		return bd, nil
	}
	return store.Binding{}, store.ErrNotFound
}

// fakeAuditor records audit entries.
type fakeAuditor struct {
	mu   sync.Mutex
	recs []store.AuditRecord
	err  error // when set, every append fails with it
}

func (a *fakeAuditor) Audit(_ context.Context, rec store.AuditRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.recs = append(a.recs, rec)
	return nil
}

func (a *fakeAuditor) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.err = err
}

func (a *fakeAuditor) records() []store.AuditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.recs)
}

// refusals returns the gateway.refuse entries with that code.
func (a *fakeAuditor) refusals(code string) []store.AuditRecord {
	var out []store.AuditRecord
	for _, r := range a.records() {
		if r.Action == actionRefuse && r.Detail["code"] == code {
			out = append(out, r)
		}
	}
	return out
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var testKey = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

var certSeq atomic.Int64

// newTestCert makes a throw-away certificate with a fresh serial; what it
// stands for is whatever the fake verifier is told.
func newTestCert(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x1000 + certSeq.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, testKey().Public(), testKey())
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
