package simplatform

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
)

// ledger implements the contract on the database. Every change runs in one
// transaction that first takes the locks it needs, in a fixed order (the
// idempotency key, then the bills by ID or the prepaid account), so that
// concurrent requests are serialised where they touch the same things and
// never deadlock:
//
//   - an advisory lock on the payment reference or prepaid key makes
//     "look up the key, else write" atomic: ten identical posts at once
//     make one posting and nine replays;
//   - row locks on the bills make "check the amount due, then allocate"
//     atomic against other payments of the same bills;
//   - a row lock on the prepaid account does the same for its balance.
type ledger struct {
	db    *store.DB
	today func() day
	now   func() time.Time
}

var _ platform.Service = (*ledger)(nil)

// raceWindow, set by tests only, runs after a posting or entry looked up
// its idempotency key and before it writes: a pause there makes concurrent
// duplicates collide reliably, so the tests prove the locking rather than
// a lucky schedule.
var raceWindow atomic.Pointer[func()]

func pauseForRace() {
	if f := raceWindow.Load(); f != nil {
		(*f)()
	}
}

// txOptions: read committed, so that a statement run after a lock was
// granted sees what the previous holder committed.
var txOptions = store.TxOptions{Isolation: pgx.ReadCommitted}

func fail(code platform.Code, format string, args ...any) *platform.Error {
	return &platform.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// keyPattern is what payment references and prepaid entry keys look like.
var keyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

func checkKey(what, k string) error {
	if !keyPattern.MatchString(k) {
		return fail(platform.CodeInvalidRequest, "%s %q must be 1–128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit", what, clip(k))
	}
	return nil
}

func checkText(what, s string, required bool, maxRunes int) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return fail(platform.CodeInvalidRequest, "%s is required", what)
	case !utf8.ValidString(s):
		return fail(platform.CodeInvalidRequest, "%s is not valid UTF-8", what)
	case utf8.RuneCountInString(s) > maxRunes:
		return fail(platform.CodeInvalidRequest, "%s is longer than %d characters", what, maxRunes)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fail(platform.CodeInvalidRequest, "%s contains control characters", what)
		}
	}
	return nil
}

// clip shortens what an error message repeats of the caller's input.
func clip(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max]) + "…"
}

func checkAmount(what string, a money.Fen) error {
	if a <= 0 || a > money.Max {
		return fail(platform.CodeInvalidRequest, "%s %s must be positive and at most %s", what, a, money.Max)
	}
	return nil
}

// ---- customers and consumption ----

const customerColumns = `id, account_number, name, type, voltage_grade, contract_capacity_kva, contact_name, contact_phone, address`

func scanCustomer(row pgx.Row) (platform.Customer, error) {
	var c platform.Customer
	err := row.Scan(&c.ID, &c.AccountNumber, &c.Name, &c.Type, &c.VoltageGrade, &c.ContractCapacityKVA,
		&c.ContactName, &c.ContactPhone, &c.Address)
	return c, err
}

func (l *ledger) Customer(ctx context.Context, customerID string) (platform.Customer, error) {
	c, err := scanCustomer(l.db.QueryRow(ctx, `SELECT `+customerColumns+` FROM platform_sim.customers WHERE id = $1`, customerID))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fail(platform.CodeUnknownCustomer, "no customer %q", clip(customerID))
	}
	return c, err
}

// requireCustomer answers unknown_customer for a customer that does not
// exist.
func requireCustomer(ctx context.Context, q store.Querier, customerID string) error {
	var one int
	err := q.QueryRow(ctx, `SELECT 1 FROM platform_sim.customers WHERE id = $1`, customerID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fail(platform.CodeUnknownCustomer, "no customer %q", clip(customerID))
	}
	return err
}

func (l *ledger) MeteringPoints(ctx context.Context, customerID string) ([]platform.MeteringPoint, error) {
	if err := requireCustomer(ctx, l.db, customerID); err != nil {
		return nil, err
	}
	rows, err := l.db.Query(ctx, `SELECT id, customer_id, meter_number, location, multiplier
		FROM platform_sim.metering_points WHERE customer_id = $1 ORDER BY id`, customerID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (platform.MeteringPoint, error) {
		var m platform.MeteringPoint
		err := r.Scan(&m.ID, &m.CustomerID, &m.MeterNumber, &m.Location, &m.Multiplier)
		return m, err
	})
}

// periodRange checks an optional from..to range of billing months.
func periodRange(from, to platform.Period) error {
	for _, p := range []platform.Period{from, to} {
		if p == "" {
			continue
		}
		if _, err := platform.ParsePeriod(string(p)); err != nil {
			return fail(platform.CodeInvalidRequest, "%v", err)
		}
	}
	if from != "" && to != "" && from > to {
		return fail(platform.CodeInvalidRequest, "from %s is after to %s", from, to)
	}
	return nil
}

func (l *ledger) Consumption(ctx context.Context, customerID string, from, to platform.Period) ([]platform.Consumption, error) {
	if err := periodRange(from, to); err != nil {
		return nil, err
	}
	if err := requireCustomer(ctx, l.db, customerID); err != nil {
		return nil, err
	}
	rows, err := l.db.Query(ctx, `SELECT c.period, c.metering_point_id, c.peak_kwh, c.flat_kwh, c.valley_kwh
		FROM platform_sim.consumption c JOIN platform_sim.metering_points m ON m.id = c.metering_point_id
		WHERE m.customer_id = $1 AND ($2 = '' OR c.period >= $2) AND ($3 = '' OR c.period <= $3)
		ORDER BY c.period, c.metering_point_id`, customerID, string(from), string(to))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (platform.Consumption, error) {
		var c platform.Consumption
		err := r.Scan(&c.Period, &c.MeteringPointID, &c.PeakKWh, &c.FlatKWh, &c.ValleyKWh)
		c.TotalKWh = c.PeakKWh + c.FlatKWh + c.ValleyKWh
		return c, err
	})
}

// ---- bills ----

const billColumns = `id, customer_id, period, issued_on, due_date, kwh, energy_charge, basic_charge`

func scanBill(row pgx.Row) (BillRecord, error) {
	var b BillRecord
	var issued, due time.Time
	err := row.Scan(&b.ID, &b.CustomerID, &b.Period, &issued, &due, &b.KWh, &b.EnergyCharge, &b.BasicCharge)
	b.IssuedOn, b.DueDate = dayFromTime(issued).date(), dayFromTime(due).date()
	return b, err
}

func queryBills(ctx context.Context, q store.Querier, sql string, args ...any) ([]BillRecord, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (BillRecord, error) { return scanBill(r) })
}

// paidTowards returns the allocations of posted payments to the bills.
func paidTowards(ctx context.Context, q store.Querier, billIDs []string) (map[string][]paidOn, error) {
	out := map[string][]paidOn{}
	if len(billIDs) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT a.bill_id, p.posted_on, a.amount
		FROM platform_sim.allocations a JOIN platform_sim.payments p ON p.reference = a.payment_reference
		WHERE p.status = 'posted' AND a.bill_id = ANY($1)`, billIDs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var on time.Time
		var amount money.Fen
		if err := rows.Scan(&id, &on, &amount); err != nil {
			return nil, err
		}
		out[id] = append(out[id], paidOn{on: dayFromTime(on), amount: amount})
	}
	return out, rows.Err()
}

// views computes the bills as they stand today.
func views(ctx context.Context, q store.Querier, bills []BillRecord, today day) ([]billView, error) {
	ids := make([]string, len(bills))
	for i, b := range bills {
		ids[i] = b.ID
	}
	paid, err := paidTowards(ctx, q, ids)
	if err != nil {
		return nil, err
	}
	out := make([]billView, len(bills))
	for i, b := range bills {
		out[i] = b.view(paid[b.ID], today)
	}
	return out, nil
}

func (l *ledger) customerBills(ctx context.Context, customerID string, from, to platform.Period) ([]billView, error) {
	if err := requireCustomer(ctx, l.db, customerID); err != nil {
		return nil, err
	}
	bills, err := queryBills(ctx, l.db, `SELECT `+billColumns+` FROM platform_sim.bills
		WHERE customer_id = $1 AND ($2 = '' OR period >= $2) AND ($3 = '' OR period <= $3)
		ORDER BY period, id`, customerID, string(from), string(to))
	if err != nil {
		return nil, err
	}
	return views(ctx, l.db, bills, l.today())
}

// statusMatches applies BillFilter.Status.
func statusMatches(filter string, s platform.BillStatus) bool {
	switch filter {
	case "", "all":
		return true
	case "unpaid":
		return s != platform.BillSettled
	default:
		return string(s) == filter
	}
}

func (l *ledger) Bills(ctx context.Context, customerID string, f platform.BillFilter) ([]platform.Bill, error) {
	switch f.Status {
	case "", "all", "unpaid", string(platform.BillOpen), string(platform.BillOverdue), string(platform.BillSettled):
	default:
		return nil, fail(platform.CodeInvalidRequest, "status %q is not one of all, unpaid, open, overdue, settled", clip(f.Status))
	}
	if err := periodRange(f.From, f.To); err != nil {
		return nil, err
	}
	vs, err := l.customerBills(ctx, customerID, f.From, f.To)
	if err != nil {
		return nil, err
	}
	out := []platform.Bill{}
	for _, v := range vs {
		if statusMatches(f.Status, v.Status) {
			out = append(out, v.Bill)
		}
	}
	return out, nil
}

func (l *ledger) Bill(ctx context.Context, customerID, billID string) (platform.Bill, error) {
	if err := requireCustomer(ctx, l.db, customerID); err != nil {
		return platform.Bill{}, err
	}
	// The customer is part of the key: another customer's bill is "not
	// found", indistinguishable from a bill that does not exist.
	bills, err := queryBills(ctx, l.db, `SELECT `+billColumns+` FROM platform_sim.bills WHERE id = $1 AND customer_id = $2`, billID, customerID)
	if err != nil {
		return platform.Bill{}, err
	}
	if len(bills) == 0 {
		return platform.Bill{}, fail(platform.CodeBillNotFound, "customer %s has no bill %q", customerID, clip(billID))
	}
	vs, err := views(ctx, l.db, bills, l.today())
	if err != nil {
		return platform.Bill{}, err
	}
	return vs[0].Bill, nil
}

func (l *ledger) Arrears(ctx context.Context, customerID string) (platform.Arrears, error) {
	vs, err := l.customerBills(ctx, customerID, "", "")
	if err != nil {
		return platform.Arrears{}, err
	}
	return arrearsOf(customerID, vs), nil
}

func arrearsOf(customerID string, vs []billView) platform.Arrears {
	a := platform.Arrears{CustomerID: customerID, Bills: []platform.Bill{}}
	for _, v := range vs {
		if v.Status != platform.BillOverdue {
			continue
		}
		a.Total += v.AmountDue
		a.LateFees += v.UnpaidFee
		a.OverdueBills++
		if a.OldestDueDate == "" || v.DueDate < a.OldestDueDate {
			a.OldestDueDate = v.DueDate
		}
		a.Bills = append(a.Bills, v.Bill)
	}
	return a
}

// ---- payments ----

const paymentColumns = `reference, customer_id, amount, prepaid, channel, channel_txn_id, paid_at, posted_at, status, reversed_at, reverse_note`

func queryPayments(ctx context.Context, q store.Querier, sql string, args ...any) ([]platform.Payment, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (platform.Payment, error) {
		var p platform.Payment
		err := r.Scan(&p.Reference, &p.CustomerID, &p.Amount, &p.Prepaid, &p.Channel, &p.ChannelTxnID,
			&p.PaidAt, &p.PostedAt, &p.Status, &p.ReversedAt, &p.ReverseNote)
		p.PaidAt, p.PostedAt = p.PaidAt.UTC(), p.PostedAt.UTC()
		if p.ReversedAt != nil {
			t := p.ReversedAt.UTC()
			p.ReversedAt = &t
		}
		return p, err
	})
	if err != nil || len(ps) == 0 {
		return ps, err
	}
	refs := make([]string, len(ps))
	index := map[string]int{}
	for i, p := range ps {
		refs[i] = p.Reference
		index[p.Reference] = i
	}
	arows, err := q.Query(ctx, `SELECT payment_reference, bill_id, amount FROM platform_sim.allocations
		WHERE payment_reference = ANY($1) ORDER BY payment_reference, position`, refs)
	if err != nil {
		return nil, err
	}
	defer arows.Close()
	for arows.Next() {
		var ref string
		var a platform.Allocation
		if err := arows.Scan(&ref, &a.BillID, &a.Amount); err != nil {
			return nil, err
		}
		ps[index[ref]].Allocations = append(ps[index[ref]].Allocations, a)
	}
	return ps, arows.Err()
}

// shanghaiMidnight is the instant a Shanghai calendar day begins.
func shanghaiMidnight(d day) time.Time {
	t := d.time()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, platform.Shanghai)
}

func (l *ledger) Payments(ctx context.Context, customerID string, from, to platform.Date) ([]platform.Payment, error) {
	// Unbounded ends are represented by instants far outside any data.
	lo, hi := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	if from != "" {
		d, err := parseDay(from)
		if err != nil {
			return nil, fail(platform.CodeInvalidRequest, "from: %v", err)
		}
		lo = shanghaiMidnight(d)
	}
	if to != "" {
		d, err := parseDay(to)
		if err != nil {
			return nil, fail(platform.CodeInvalidRequest, "to: %v", err)
		}
		hi = shanghaiMidnight(d + 1)
	}
	if !lo.Before(hi) {
		return nil, fail(platform.CodeInvalidRequest, "from %s is after to %s", from, to)
	}
	if err := requireCustomer(ctx, l.db, customerID); err != nil {
		return nil, err
	}
	ps, err := queryPayments(ctx, l.db, `SELECT `+paymentColumns+` FROM platform_sim.payments
		WHERE customer_id = $1 AND paid_at >= $2 AND paid_at < $3
		ORDER BY paid_at DESC, reference DESC`, customerID, lo, hi)
	if ps == nil && err == nil {
		ps = []platform.Payment{}
	}
	return ps, err
}

func (l *ledger) Payment(ctx context.Context, reference string) (platform.Payment, error) {
	return paymentByRef(ctx, l.db, reference)
}

func paymentByRef(ctx context.Context, q store.Querier, reference string) (platform.Payment, error) {
	ps, err := queryPayments(ctx, q, `SELECT `+paymentColumns+` FROM platform_sim.payments WHERE reference = $1`, reference)
	if err != nil {
		return platform.Payment{}, err
	}
	if len(ps) == 0 {
		return platform.Payment{}, fail(platform.CodeNotFound, "no payment with reference %q", clip(reference))
	}
	return ps[0], nil
}

// requestHash identifies the content of a posting, to tell a replay (same
// hash) from a reused reference (conflict). Allocation order does not
// matter; the payment time counts to the microsecond PostgreSQL keeps.
func requestHash(p platform.PostPayment) string {
	allocs := slices.Clone(p.Allocations)
	slices.SortFunc(allocs, func(a, b platform.Allocation) int { return strings.Compare(a.BillID, b.BillID) })
	b, _ := json.Marshal(struct {
		Reference    string                `json:"reference"`
		CustomerID   string                `json:"customer_id"`
		Amount       money.Fen             `json:"amount"`
		Allocations  []platform.Allocation `json:"allocations"`
		Prepaid      bool                  `json:"prepaid"`
		Channel      string                `json:"channel"`
		ChannelTxnID string                `json:"channel_txn_id"`
		PaidAt       string                `json:"paid_at"`
	}{p.Reference, p.CustomerID, p.Amount, allocs, p.Prepaid, p.Channel, p.ChannelTxnID,
		p.PaidAt.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func checkPostPayment(p platform.PostPayment) error {
	if err := checkKey("reference", p.Reference); err != nil {
		return err
	}
	if err := checkText("customer_id", p.CustomerID, true, 128); err != nil {
		return err
	}
	if err := checkAmount("amount", p.Amount); err != nil {
		return err
	}
	if err := checkText("channel", p.Channel, true, 32); err != nil {
		return err
	}
	if err := checkText("channel_txn_id", p.ChannelTxnID, false, 64); err != nil {
		return err
	}
	if p.PaidAt.IsZero() {
		return fail(platform.CodeInvalidRequest, "paid_at is required")
	}
	switch {
	case p.Prepaid && len(p.Allocations) > 0:
		return fail(platform.CodeInvalidRequest, "a prepaid top-up has no allocations")
	case !p.Prepaid && len(p.Allocations) == 0:
		return fail(platform.CodeInvalidRequest, "a payment of bills needs at least one allocation")
	case len(p.Allocations) > 100:
		return fail(platform.CodeInvalidRequest, "more than 100 allocations")
	}
	seen := map[string]bool{}
	for _, a := range p.Allocations {
		if err := checkText("allocation bill_id", a.BillID, true, 128); err != nil {
			return err
		}
		if seen[a.BillID] {
			return fail(platform.CodeInvalidRequest, "bill %q is allocated twice", clip(a.BillID))
		}
		seen[a.BillID] = true
		if err := checkAmount("allocation to "+clip(a.BillID), a.Amount); err != nil {
			return err
		}
	}
	return nil
}

// lockKey takes a transaction-scoped advisory lock on an idempotency key.
func lockKey(ctx context.Context, tx pgx.Tx, namespace, key string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, namespace+":"+key)
	return err
}

func (l *ledger) PostPayment(ctx context.Context, p platform.PostPayment) (platform.Payment, error) {
	out, _, err := l.postPayment(ctx, p)
	return out, err
}

// postPayment posts p and reports whether it was posted now (false: a
// replay of an earlier posting).
func (l *ledger) postPayment(ctx context.Context, p platform.PostPayment) (out platform.Payment, created bool, err error) {
	if err := checkPostPayment(p); err != nil {
		return out, false, err
	}
	hash := requestHash(p)
	today := l.today()
	err = l.db.Transact(ctx, txOptions, func(tx pgx.Tx) error {
		created = false
		if err := lockKey(ctx, tx, "payment", p.Reference); err != nil {
			return err
		}
		var prev string
		err := tx.QueryRow(ctx, `SELECT request_hash FROM platform_sim.payments WHERE reference = $1`, p.Reference).Scan(&prev)
		switch {
		case err == nil && prev == hash:
			out, err = paymentByRef(ctx, tx, p.Reference)
			return err
		case err == nil:
			return fail(platform.CodeConflict, "reference %s was posted with other content", p.Reference)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		pauseForRace()
		if err := requireCustomer(ctx, tx, p.CustomerID); err != nil {
			return err
		}
		now := l.now().UTC().Truncate(time.Microsecond)
		var balance money.Fen
		if p.Prepaid {
			if balance, err = lockAccount(ctx, tx, p.CustomerID, now); err != nil {
				return err
			}
		} else if err := checkAllocations(ctx, tx, p, today); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO platform_sim.payments
			(reference, customer_id, amount, prepaid, channel, channel_txn_id, paid_at, posted_at, posted_on, status, request_hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'posted', $10)`,
			p.Reference, p.CustomerID, p.Amount, p.Prepaid, p.Channel, p.ChannelTxnID, p.PaidAt.UTC(), now, today.time(), hash); err != nil {
			return err
		}
		for i, a := range p.Allocations {
			if _, err := tx.Exec(ctx, `INSERT INTO platform_sim.allocations (payment_reference, position, bill_id, amount)
				VALUES ($1, $2, $3, $4)`, p.Reference, i, a.BillID, a.Amount); err != nil {
				return err
			}
		}
		if p.Prepaid {
			if err := moveBalance(ctx, tx, p.CustomerID, balance, p.Amount, "", p.Reference,
				"top-up by payment "+p.Reference, now); err != nil {
				return err
			}
		}
		created = true
		out, err = paymentByRef(ctx, tx, p.Reference)
		return err
	})
	return out, created, err
}

// checkAllocations locks the bills of a payment and checks each allocation
// against the bill's amount due today.
func checkAllocations(ctx context.Context, tx pgx.Tx, p platform.PostPayment, today day) error {
	ids := make([]string, len(p.Allocations))
	for i, a := range p.Allocations {
		ids[i] = a.BillID
	}
	bills, err := queryBills(ctx, tx, `SELECT `+billColumns+` FROM platform_sim.bills
		WHERE id = ANY($1) AND customer_id = $2 ORDER BY id FOR UPDATE`, ids, p.CustomerID)
	if err != nil {
		return err
	}
	vs, err := views(ctx, tx, bills, today)
	if err != nil {
		return err
	}
	byID := map[string]billView{}
	for _, v := range vs {
		byID[v.ID] = v
	}
	var sum money.Fen
	for _, a := range p.Allocations {
		v, ok := byID[a.BillID]
		switch {
		case !ok:
			return fail(platform.CodeBillNotFound, "customer %s has no bill %q", p.CustomerID, clip(a.BillID))
		case v.Status == platform.BillSettled:
			return fail(platform.CodeAlreadySettled, "bill %s is already settled", v.ID)
		case a.Amount > v.AmountDue:
			return fail(platform.CodeAmountMismatch, "allocation of %s to bill %s exceeds its amount due %s", a.Amount, v.ID, v.AmountDue)
		}
		sum += a.Amount
	}
	if sum != p.Amount {
		return fail(platform.CodeAmountMismatch, "allocations sum to %s, the amount is %s", sum, p.Amount)
	}
	return nil
}

func (l *ledger) ReversePayment(ctx context.Context, reference, note string) (out platform.Payment, err error) {
	if err := checkKey("reference", reference); err != nil {
		return out, err
	}
	if err := checkText("note", note, false, 200); err != nil {
		return out, err
	}
	err = l.db.Transact(ctx, txOptions, func(tx pgx.Tx) error {
		var customerID, status string
		var amount money.Fen
		var prepaid bool
		err := tx.QueryRow(ctx, `SELECT customer_id, status, amount, prepaid FROM platform_sim.payments
			WHERE reference = $1 FOR UPDATE`, reference).Scan(&customerID, &status, &amount, &prepaid)
		if errors.Is(err, pgx.ErrNoRows) {
			return fail(platform.CodeNotFound, "no payment with reference %q", clip(reference))
		}
		if err != nil {
			return err
		}
		if status == string(platform.PaymentReversed) {
			out, err = paymentByRef(ctx, tx, reference)
			return err
		}
		now := l.now().UTC().Truncate(time.Microsecond)
		if prepaid {
			balance, err := lockAccount(ctx, tx, customerID, now)
			if err != nil {
				return err
			}
			if balance < amount {
				return fail(platform.CodeInsufficientFunds, "the top-up %s of %s was spent: the prepaid balance is %s", reference, amount, balance)
			}
			if err := moveBalance(ctx, tx, customerID, balance, -amount, "", reference, "reversal of payment "+reference, now); err != nil {
				return err
			}
		} else {
			// Lock the bills like a posting does, so that a concurrent
			// posting sees the bills either before or after the reversal.
			if _, err := tx.Exec(ctx, `SELECT 1 FROM platform_sim.bills WHERE id IN
				(SELECT bill_id FROM platform_sim.allocations WHERE payment_reference = $1) ORDER BY id FOR UPDATE`, reference); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE platform_sim.payments SET status = 'reversed', reversed_at = $2, reverse_note = $3
			WHERE reference = $1`, reference, now, note); err != nil {
			return err
		}
		out, err = paymentByRef(ctx, tx, reference)
		return err
	})
	return out, err
}

// ---- prepaid ----

// lockAccount locks a customer's prepaid account and returns its balance,
// opening the account (empty) if the customer has none yet.
func lockAccount(ctx context.Context, tx pgx.Tx, customerID string, now time.Time) (money.Fen, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO platform_sim.prepaid_accounts (customer_id, balance, updated_at)
		VALUES ($1, 0, $2) ON CONFLICT (customer_id) DO NOTHING`, customerID, now); err != nil {
		return 0, err
	}
	var balance money.Fen
	err := tx.QueryRow(ctx, `SELECT balance FROM platform_sim.prepaid_accounts WHERE customer_id = $1 FOR UPDATE`, customerID).Scan(&balance)
	return balance, err
}

// moveBalance records an entry of amount on a locked account whose balance
// is balance, keyed by key or by a payment reference.
func moveBalance(ctx context.Context, tx pgx.Tx, customerID string, balance, amount money.Fen, key, paymentRef, memo string, now time.Time) error {
	after := balance + amount
	if after < 0 {
		return fail(platform.CodeInsufficientFunds, "prepaid balance %s is less than the debit %s", balance, -amount)
	}
	if after > money.Max {
		return fail(platform.CodeInvalidRequest, "the prepaid balance would exceed %s", money.Max)
	}
	if _, err := tx.Exec(ctx, `UPDATE platform_sim.prepaid_accounts SET balance = $2, updated_at = $3 WHERE customer_id = $1`,
		customerID, after, now); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO platform_sim.prepaid_entries (key, customer_id, amount, balance_after, memo, at, payment_reference)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, nullIfEmpty(key), customerID, amount, after, memo, now, nullIfEmpty(paymentRef))
	return err
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (l *ledger) PrepaidAccount(ctx context.Context, customerID string) (platform.PrepaidAccount, error) {
	a := platform.PrepaidAccount{CustomerID: customerID}
	err := l.db.QueryRow(ctx, `SELECT balance, updated_at FROM platform_sim.prepaid_accounts WHERE customer_id = $1`, customerID).
		Scan(&a.Balance, &a.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		// A customer without an account has an empty one.
		if err := requireCustomer(ctx, l.db, customerID); err != nil {
			return a, err
		}
		return a, nil
	}
	a.UpdatedAt = a.UpdatedAt.UTC()
	return a, err
}

func (l *ledger) DebitPrepaid(ctx context.Context, customerID, key string, amount money.Fen, memo string) (platform.PrepaidEntry, error) {
	if err := checkAmount("debit", amount); err != nil {
		return platform.PrepaidEntry{}, err
	}
	e, _, err := l.putEntry(ctx, key, platform.PrepaidEntryRequest{CustomerID: customerID, Amount: -amount, Memo: memo})
	return e, err
}

func (l *ledger) CreditPrepaid(ctx context.Context, customerID, key string, amount money.Fen, memo string) (platform.PrepaidEntry, error) {
	if err := checkAmount("credit", amount); err != nil {
		return platform.PrepaidEntry{}, err
	}
	e, _, err := l.putEntry(ctx, key, platform.PrepaidEntryRequest{CustomerID: customerID, Amount: amount, Memo: memo})
	return e, err
}

// putEntry credits (positive amount) or debits (negative) a prepaid
// account once per key, and reports whether it did so now.
func (l *ledger) putEntry(ctx context.Context, key string, r platform.PrepaidEntryRequest) (out platform.PrepaidEntry, created bool, err error) {
	if err := checkKey("key", key); err != nil {
		return out, false, err
	}
	if err := checkText("customer_id", r.CustomerID, true, 128); err != nil {
		return out, false, err
	}
	if r.Amount == 0 || r.Amount > money.Max || r.Amount < -money.Max {
		return out, false, fail(platform.CodeInvalidRequest, "amount %s must be non-zero and at most %s either way", r.Amount, money.Max)
	}
	if err := checkText("memo", r.Memo, false, 200); err != nil {
		return out, false, err
	}
	err = l.db.Transact(ctx, txOptions, func(tx pgx.Tx) error {
		created = false
		if err := lockKey(ctx, tx, "prepaid", key); err != nil {
			return err
		}
		prev, err := entryByKey(ctx, tx, key)
		switch {
		case err == nil:
			if prev.CustomerID != r.CustomerID || prev.Amount != r.Amount || prev.Memo != r.Memo {
				return fail(platform.CodeConflict, "key %s was used for another entry", key)
			}
			out = prev
			return nil
		case !errors.Is(err, platform.ErrNotFound):
			return err
		}
		pauseForRace()
		if err := requireCustomer(ctx, tx, r.CustomerID); err != nil {
			return err
		}
		now := l.now().UTC().Truncate(time.Microsecond)
		balance, err := lockAccount(ctx, tx, r.CustomerID, now)
		if err != nil {
			return err
		}
		if err := moveBalance(ctx, tx, r.CustomerID, balance, r.Amount, key, "", r.Memo, now); err != nil {
			return err
		}
		created = true
		out, err = entryByKey(ctx, tx, key)
		return err
	})
	return out, created, err
}

func (l *ledger) PrepaidEntry(ctx context.Context, key string) (platform.PrepaidEntry, error) {
	return entryByKey(ctx, l.db, key)
}

func entryByKey(ctx context.Context, q store.Querier, key string) (platform.PrepaidEntry, error) {
	e := platform.PrepaidEntry{Key: key}
	err := q.QueryRow(ctx, `SELECT customer_id, amount, balance_after, memo, at FROM platform_sim.prepaid_entries WHERE key = $1`, key).
		Scan(&e.CustomerID, &e.Amount, &e.BalanceAfter, &e.Memo, &e.At)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, fail(platform.CodeNotFound, "no prepaid entry with key %q", clip(key))
	}
	e.At = e.At.UTC()
	return e, err
}
