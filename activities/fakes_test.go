package activities

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

// fakeRecords is GridPay's records in memory: enough of the store's rules
// (idempotent writes, nonces once, transitions) for the activities'
// tests; the store's integration tests hold the real ones.
type fakeRecords struct {
	mu       sync.Mutex
	certs    map[string]store.Certificate
	revoked  map[string]bool
	bound    map[string]bool // cert serial → active binding
	nonces   map[string]string
	audits   []store.AuditRecord
	payments []*store.Payment
	calls    []string
	issues   []store.ReconIssue
	actions  map[string]string
	finished *store.ReconCounts
	fail     error // returned by every write when set
}

func newFakeRecords() *fakeRecords {
	return &fakeRecords{certs: map[string]store.Certificate{}, revoked: map[string]bool{}, bound: map[string]bool{},
		nonces: map[string]string{}, actions: map[string]string{}}
}

func (f *fakeRecords) call(name string) func() {
	f.mu.Lock()
	f.calls = append(f.calls, name)
	return f.mu.Unlock
}

func (f *fakeRecords) Certificate(_ context.Context, serial string) (store.Certificate, error) {
	defer f.call("Certificate")()
	c, ok := f.certs[serial]
	if !ok {
		return store.Certificate{}, store.ErrNotFound
	}
	return c, nil
}

func (f *fakeRecords) ActiveBindingForCert(_ context.Context, serial string) (store.Binding, error) {
	defer f.call("ActiveBindingForCert")()
	if !f.bound[serial] {
		return store.Binding{}, store.ErrNotFound
	}
	return store.Binding{CertSerial: serial, Status: store.BindingActive}, nil
}

func (f *fakeRecords) IsRevoked(_ context.Context, serial string) (bool, error) {
	defer f.call("IsRevoked")()
	return f.revoked[serial], nil
}

func (f *fakeRecords) RecordNonce(_ context.Context, token string, nonce []byte, wfID string, at time.Time, rec *store.AuditRecord) error {
	defer f.call("RecordNonce")()
	key := fmt.Sprintf("%s/%x", token, nonce)
	if by, ok := f.nonces[key]; ok {
		if by != wfID {
			return fmt.Errorf("%w: by %s", store.ErrReplay, by)
		}
		return nil
	}
	f.nonces[key] = wfID
	if rec != nil {
		f.audits = append(f.audits, *rec)
	}
	return nil
}

func (f *fakeRecords) Audit(_ context.Context, rec store.AuditRecord) error {
	defer f.call("Audit")()
	f.audits = append(f.audits, rec)
	return nil
}

func (f *fakeRecords) find(pred func(*store.Payment) bool) *store.Payment {
	for _, p := range f.payments {
		if pred(p) {
			return p
		}
	}
	return nil
}

func (f *fakeRecords) CreatePayment(_ context.Context, np store.NewPayment, actor string) (store.Payment, error) {
	defer f.call("CreatePayment")()
	if f.fail != nil {
		return store.Payment{}, f.fail
	}
	if p := f.find(func(p *store.Payment) bool {
		return p.CustomerID == np.CustomerID && p.IdempotencyKey == np.IdempotencyKey
	}); p != nil {
		if p.WorkflowID != np.WorkflowID || p.Amount != np.Amount {
			return store.Payment{}, store.ErrConflict
		}
		return *p, nil
	}
	p := &store.Payment{ID: int64(len(f.payments) + 1), IdempotencyKey: np.IdempotencyKey, CustomerID: np.CustomerID, WorkflowID: np.WorkflowID,
		TokenSerial: np.TokenSerial, CertSerial: np.CertSerial, Kind: np.Kind, BillIDs: slices.Clone(np.BillIDs), BillAmounts: slices.Clone(np.BillAmounts),
		Amount: np.Amount, OrderID: np.OrderID, TxnTime: np.TxnTime, PayDeadline: np.PayDeadline, Status: store.PaymentAwaiting}
	if p.BillIDs == nil {
		p.BillIDs, p.BillAmounts = []string{}, []int64{}
	}
	f.payments = append(f.payments, p)
	return *p, nil
}

func (f *fakeRecords) RejectPayment(_ context.Context, np store.NewPayment, reason, actor string) (store.Payment, error) {
	defer f.call("RejectPayment")()
	if p := f.find(func(p *store.Payment) bool {
		return p.CustomerID == np.CustomerID && p.IdempotencyKey == np.IdempotencyKey
	}); p != nil {
		if p.Status != store.PaymentRejected {
			return store.Payment{}, store.ErrIllegalTransition
		}
		return *p, nil
	}
	p := &store.Payment{ID: int64(len(f.payments) + 1), IdempotencyKey: np.IdempotencyKey, CustomerID: np.CustomerID, WorkflowID: np.WorkflowID,
		Kind: np.Kind, BillIDs: np.BillIDs, Amount: np.Amount, Status: store.PaymentRejected, Reason: reason}
	f.payments = append(f.payments, p)
	return *p, nil
}

func (f *fakeRecords) move(orderID string, from []store.PaymentStatus, to store.PaymentStatus, set func(p *store.Payment)) (store.Payment, error) {
	if f.fail != nil {
		return store.Payment{}, f.fail
	}
	p := f.find(func(p *store.Payment) bool { return p.OrderID == orderID })
	if p == nil {
		return store.Payment{}, store.ErrNotFound
	}
	if p.Status != to && !slices.Contains(from, p.Status) {
		return store.Payment{}, fmt.Errorf("%w: %s → %s", store.ErrIllegalTransition, p.Status, to)
	}
	p.Status = to
	set(p)
	return *p, nil
}

func (f *fakeRecords) MarkPaid(_ context.Context, orderID string, c store.Charge, actor string) (store.Payment, error) {
	defer f.call("MarkPaid")()
	return f.move(orderID, []store.PaymentStatus{store.PaymentAwaiting, store.PaymentExpired}, store.PaymentPaid, func(p *store.Payment) {
		if p.PaidAt == nil {
			at := c.PaidAt
			p.QueryID, p.SettleDate, p.PaidAt = c.QueryID, c.SettleDate, &at
		}
	})
}

func (f *fakeRecords) MarkExpired(_ context.Context, orderID, reason, actor string) (store.Payment, error) {
	defer f.call("MarkExpired")()
	return f.move(orderID, []store.PaymentStatus{store.PaymentAwaiting}, store.PaymentExpired, func(p *store.Payment) { p.Reason = reason })
}

func (f *fakeRecords) MarkPosted(_ context.Context, orderID, ref string, at time.Time, actor string) (store.Payment, error) {
	defer f.call("MarkPosted")()
	return f.move(orderID, []store.PaymentStatus{store.PaymentPaid}, store.PaymentPosted, func(p *store.Payment) {
		if p.PostedAt == nil {
			p.PostingRef, p.PostedAt = ref, &at
		}
	})
}

func (f *fakeRecords) MarkRefunding(_ context.Context, orderID string, r store.RefundStart, actor string) (store.Payment, error) {
	defer f.call("MarkRefunding")()
	return f.move(orderID, []store.PaymentStatus{store.PaymentPaid}, store.PaymentRefunding, func(p *store.Payment) {
		t := r.TxnTime
		p.RefundAttempt, p.RefundOrderID, p.RefundTxnTime, p.Reason = r.Attempt, r.RefundOrderID, &t, r.Reason
	})
}

func (f *fakeRecords) MarkRefunded(_ context.Context, orderID string, d store.RefundDone, actor string) (store.Payment, error) {
	defer f.call("MarkRefunded")()
	return f.move(orderID, []store.PaymentStatus{store.PaymentRefunding}, store.PaymentRefunded, func(p *store.Payment) {
		at := d.RefundedAt
		p.RefundQueryID, p.RefundedAt = d.QueryID, &at
	})
}

func (f *fakeRecords) byOrder(orderID string) (store.Payment, error) {
	p := f.find(func(p *store.Payment) bool { return p.OrderID == orderID || p.RefundOrderID == orderID })
	if p == nil {
		return store.Payment{}, store.ErrNotFound
	}
	return *p, nil
}

func (f *fakeRecords) PaymentByOrderID(_ context.Context, orderID string) (store.Payment, error) {
	defer f.call("PaymentByOrderID")()
	return f.byOrder(orderID)
}

func (f *fakeRecords) PaymentByQueryID(_ context.Context, queryID string) (store.Payment, error) {
	defer f.call("PaymentByQueryID")()
	if p := f.find(func(p *store.Payment) bool { return p.QueryID == queryID }); p != nil {
		return *p, nil
	}
	return store.Payment{}, store.ErrNotFound
}

func (f *fakeRecords) PaymentByKey(_ context.Context, customerID, key string) (store.Payment, error) {
	defer f.call("PaymentByKey")()
	if p := f.find(func(p *store.Payment) bool { return p.CustomerID == customerID && p.IdempotencyKey == key }); p != nil {
		return *p, nil
	}
	return store.Payment{}, store.ErrNotFound
}

func (f *fakeRecords) PaymentsSettledOn(_ context.Context, mmdd string, from, to time.Time) ([]store.Payment, error) {
	defer f.call("PaymentsSettledOn")()
	var out []store.Payment
	for _, p := range f.payments {
		if p.SettleDate == mmdd && p.PaidAt != nil && !p.PaidAt.Before(from) && !p.PaidAt.After(to) ||
			p.RefundSettleDate == mmdd && p.RefundedAt != nil && !p.RefundedAt.Before(from) && !p.RefundedAt.After(to) {
			out = append(out, *p)
		}
	}
	return out, nil
}

func (f *fakeRecords) StartReconRun(_ context.Context, settleDate, workflowID, runID string) (store.ReconRun, error) {
	defer f.call("StartReconRun")()
	return store.ReconRun{ID: 42, SettleDate: settleDate, WorkflowID: workflowID, RunID: runID, Status: "running"}, nil
}

func (f *fakeRecords) RecordReconIssue(_ context.Context, i store.ReconIssue) (store.ReconIssue, error) {
	defer f.call("RecordReconIssue")()
	f.issues = append(f.issues, i)
	return i, nil
}

func (f *fakeRecords) SetReconIssueAction(_ context.Context, runID int64, kind, orderID, action string) error {
	defer f.call("SetReconIssueAction")()
	f.actions[kind+"/"+orderID] = action
	return nil
}

func (f *fakeRecords) FinishReconRun(_ context.Context, id int64, c store.ReconCounts) (store.ReconRun, error) {
	defer f.call("FinishReconRun")()
	f.finished = &c
	return store.ReconRun{ID: id, Status: "done"}, nil
}

var _ PaymentRecords = (*fakeRecords)(nil)

// fakeGateway is UnionPay.
type fakeGateway struct {
	mu      sync.Mutex
	forms   []unionpay.Order
	query   unionpay.QueryResult
	refunds []unionpay.RefundRequest
	answer  unionpay.Accepted
	err     error
	file    []unionpay.ReconRecord
	fileFor string
}

func (g *fakeGateway) ConsumeForm(o unionpay.Order) (unionpay.Form, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forms = append(g.forms, o)
	return unionpay.Form{Action: "https://gateway.test/frontTransReq.do", Fields: map[string]string{
		"orderId": o.OrderID, "txnAmt": fmt.Sprint(int64(o.Amount)), "txnTime": o.TxnTime.Format("20060102150405"),
		"payTimeout": o.PayTimeout.Format("20060102150405"), "backUrl": o.BackURL,
	}}, nil
}

func (g *fakeGateway) Query(_ context.Context, orderID string, txnTime time.Time) (unionpay.QueryResult, error) {
	r := g.query
	r.OrderID, r.TxnTime = orderID, txnTime
	return r, g.err
}

func (g *fakeGateway) Refund(_ context.Context, r unionpay.RefundRequest) (unionpay.Accepted, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refunds = append(g.refunds, r)
	return g.answer, g.err
}

func (g *fakeGateway) DownloadFile(_ context.Context, settleDate string) ([]unionpay.ReconRecord, error) {
	g.fileFor = settleDate
	return g.file, g.err
}

// fakePlatform is the platform web service.
type fakePlatform struct {
	customers map[string]platform.Customer
	bills     map[string]platform.Bill
	postings  map[string]platform.Payment
	posts     []platform.PostPayment
	postErr   error
	down      bool
}

func (p *fakePlatform) Customer(_ context.Context, id string) (platform.Customer, error) {
	if p.down {
		return platform.Customer{}, &platform.Error{Code: platform.CodeUnavailable, Message: "down"}
	}
	c, ok := p.customers[id]
	if !ok {
		return platform.Customer{}, &platform.Error{Code: platform.CodeUnknownCustomer, Message: "no " + id}
	}
	return c, nil
}

func (p *fakePlatform) Bill(_ context.Context, customerID, billID string) (platform.Bill, error) {
	b, ok := p.bills[billID]
	if !ok || b.CustomerID != customerID {
		return platform.Bill{}, &platform.Error{Code: platform.CodeBillNotFound, Message: "no bill " + billID}
	}
	return b, nil
}

func (p *fakePlatform) PostPayment(_ context.Context, pp platform.PostPayment) (platform.Payment, error) {
	p.posts = append(p.posts, pp)
	if p.postErr != nil {
		return platform.Payment{}, p.postErr
	}
	return platform.Payment{Reference: pp.Reference, CustomerID: pp.CustomerID, Amount: pp.Amount, Allocations: pp.Allocations,
		Prepaid: pp.Prepaid, PaidAt: pp.PaidAt, PostedAt: pp.PaidAt.Add(time.Second), Status: platform.PaymentPosted}, nil
}

func (p *fakePlatform) Payment(_ context.Context, ref string) (platform.Payment, error) {
	pf, ok := p.postings[ref]
	if !ok {
		return platform.Payment{}, &platform.Error{Code: platform.CodeNotFound, Message: "no " + ref}
	}
	return pf, nil
}
