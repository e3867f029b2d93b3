package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
)

// LoadStatus is where a load stands (migrations/0005_loads.up.sql draws
// the transitions).
type LoadStatus string

const (
	// LoadVerified: the token-signed request checked out and is recorded;
	// the debit is being made.
	LoadVerified LoadStatus = "verified"
	// LoadDebited: the platform debited the prepaid account.
	LoadDebited LoadStatus = "debited"
	// LoadAllowed: the signed allow was handed out; the key's receipt (or
	// its next contact) is awaited.
	LoadAllowed LoadStatus = "allowed"
	// LoadConfirmed: the wallet took the load. Final.
	LoadConfirmed LoadStatus = "confirmed"
	// LoadRefunded: the wallet did not take it; the debit was credited
	// back. Final.
	LoadRefunded LoadStatus = "refunded"
	// LoadRejected: the platform refused the debit; nothing moved. Final.
	LoadRejected LoadStatus = "rejected"
)

// Final reports whether nothing more happens to a load in this status.
func (s LoadStatus) Final() bool {
	return s == LoadConfirmed || s == LoadRefunded || s == LoadRejected
}

// Open reports whether a load in this status is still in flight.
func (s LoadStatus) Open() bool { return s == LoadVerified || s == LoadDebited || s == LoadAllowed }

// How a load was confirmed.
const (
	ConfirmedByReceipt = "receipt" // the key's execution receipt
	ConfirmedByContact = "contact" // the key's next contact showed its sequence advanced
	// ConfirmedByOperator: an operator settled the load of an unbound key
	// on evidence outside the system (audited with the reason).
	ConfirmedByOperator = "operator"
)

// nextLoadStatuses is the transition table of loads.
var nextLoadStatuses = map[LoadStatus][]LoadStatus{
	LoadVerified: {LoadDebited, LoadRejected},
	LoadDebited:  {LoadAllowed, LoadRefunded},
	LoadAllowed:  {LoadConfirmed, LoadRefunded},
}

var (
	// ErrLoadPending means the token has another load in flight.
	ErrLoadPending = errors.New("another load of the key is in flight")
	// ErrSequenceUsed means the token already used that sequence number.
	ErrSequenceUsed = errors.New("sequence number already used by the key")
)

// Load is a load as recorded. Amounts are fen.
type Load struct {
	ID             int64
	LoadID         string
	WorkflowID     string
	CustomerID     string
	TokenSerial    string
	CertSerial     string
	Sequence       uint64
	WalletSequence uint64
	WalletBalance  int64
	Amount         int64
	RequestSHA256  []byte
	Status         LoadStatus
	DebitKey       string
	DebitedAt      *time.Time
	StateSHA256    []byte
	AllowedAt      *time.Time
	AllowExpiresAt *time.Time
	NewBalance     *int64
	ConfirmedAt    *time.Time
	ConfirmedBy    string
	ReportSHA256   []byte
	RefundKey      string
	RefundedAt     *time.Time
	Reason         string
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// NewLoad is what CreateLoad records.
type NewLoad struct {
	LoadID         string
	WorkflowID     string
	CustomerID     string
	TokenSerial    string
	CertSerial     string
	Sequence       uint64
	WalletSequence uint64
	WalletBalance  int64
	Amount         int64
	RequestSHA256  []byte
}

func (nl NewLoad) check() error {
	switch {
	case nl.LoadID == "" || nl.WorkflowID == "" || nl.CustomerID == "" || nl.TokenSerial == "" || nl.CertSerial == "":
		return fmt.Errorf("%w: a load needs its IDs, customer, token and certificate", ErrInvalid)
	case nl.Sequence == 0 || nl.Sequence > math.MaxInt64 || nl.WalletSequence >= nl.Sequence:
		return fmt.Errorf("%w: sequence %d after wallet sequence %d", ErrInvalid, nl.Sequence, nl.WalletSequence)
	case nl.Amount <= 0 || nl.WalletBalance < 0:
		return fmt.Errorf("%w: amount %d fen onto a wallet of %d fen", ErrInvalid, nl.Amount, nl.WalletBalance)
	case len(nl.RequestSHA256) != 32:
		return fmt.Errorf("%w: the request's SHA-256 has %d bytes", ErrInvalid, len(nl.RequestSHA256))
	}
	return nil
}

const loadColumns = `id, load_id, workflow_id, customer_id, token_serial, cert_serial, sequence, wallet_sequence, wallet_balance, amount,
	request_sha256, status, coalesce(debit_key, ''), debited_at, state_sha256, allowed_at, allow_expires_at, new_balance,
	confirmed_at, coalesce(confirmed_by, ''), report_sha256, coalesce(refund_key, ''), refunded_at, reason, created_at, updated_at`

func scanLoad(row pgx.Row) (Load, error) {
	var (
		l                Load
		status           string
		seq, walletSeq   int64
		debited, allowed *time.Time
		expires, confAt  *time.Time
		refundedAt       *time.Time
	)
	err := row.Scan(&l.ID, &l.LoadID, &l.WorkflowID, &l.CustomerID, &l.TokenSerial, &l.CertSerial, &seq, &walletSeq, &l.WalletBalance,
		&l.Amount, &l.RequestSHA256, &status, &l.DebitKey, &debited, &l.StateSHA256, &allowed, &expires, &l.NewBalance,
		&confAt, &l.ConfirmedBy, &l.ReportSHA256, &l.RefundKey, &refundedAt, &l.Reason, &l.CreatedAt, &l.UpdatedAt)
	if err != nil {
		return Load{}, translate(err)
	}
	l.Status = LoadStatus(status)
	l.Sequence, l.WalletSequence = uint64(seq), uint64(walletSeq)
	l.DebitedAt, l.AllowedAt, l.AllowExpiresAt = utcPtr(debited), utcPtr(allowed), utcPtr(expires)
	l.ConfirmedAt, l.RefundedAt = utcPtr(confAt), utcPtr(refundedAt)
	l.CreatedAt, l.UpdatedAt = l.CreatedAt.UTC(), l.UpdatedAt.UTC()
	return l, nil
}

func (l Load) sameRequest(nl NewLoad) bool {
	return l.WorkflowID == nl.WorkflowID && l.LoadID == nl.LoadID && l.CustomerID == nl.CustomerID && l.TokenSerial == nl.TokenSerial &&
		l.Sequence == nl.Sequence && l.Amount == nl.Amount && l.WalletBalance == nl.WalletBalance &&
		l.WalletSequence == nl.WalletSequence && bytes.Equal(l.RequestSHA256, nl.RequestSHA256)
}

func loadDetail(l Load) map[string]any {
	return map[string]any{
		"customer_id": l.CustomerID, "token_serial": l.TokenSerial, "cert_serial": l.CertSerial, "load_id": l.LoadID,
		"sequence": int64(l.Sequence), "amount_fen": l.Amount,
	}
}

// CreateLoad records a verified load request (status verified) and audits
// it ("load.verified") in the same transaction. Recording the same request
// again for the same workflow returns the load unchanged. A sequence the
// token used before is ErrSequenceUsed; another load of the token still in
// flight is ErrLoadPending; other content under the same IDs is
// ErrConflict.
func CreateLoad(ctx context.Context, q Querier, nl NewLoad, actor string) (_ Load, err error) {
	defer derrors.Wrap(&err, "store.CreateLoad(ctx, %q)", nl.WorkflowID)
	if err := nl.check(); err != nil {
		return Load{}, err
	}
	tx, err := q.Begin(ctx)
	if err != nil {
		return Load{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	l, err := scanLoad(tx.QueryRow(ctx, `
		INSERT INTO loads (load_id, workflow_id, customer_id, token_serial, cert_serial, sequence, wallet_sequence, wallet_balance,
			amount, request_sha256, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'verified')
		ON CONFLICT DO NOTHING
		RETURNING `+loadColumns,
		nl.LoadID, nl.WorkflowID, nl.CustomerID, nl.TokenSerial, nl.CertSerial, int64(nl.Sequence), int64(nl.WalletSequence),
		nl.WalletBalance, nl.Amount, nl.RequestSHA256))
	if errors.Is(err, ErrNotFound) {
		// Nothing inserted: the same request again, or a conflict.
		return whyNotCreated(ctx, tx, nl)
	}
	if err != nil {
		return Load{}, err
	}
	if _, err := AppendAudit(ctx, tx, AuditRecord{Actor: actor, Action: "load." + string(LoadVerified), Subject: l.WorkflowID,
		Outcome: OutcomeOK, Detail: loadDetail(l)}); err != nil {
		return Load{}, err
	}
	return l, tx.Commit(ctx)
}

// whyNotCreated returns the load already recorded for the very same
// request (an idempotent repeat), or explains the conflict.
func whyNotCreated(ctx context.Context, tx pgx.Tx, nl NewLoad) (Load, error) {
	same, err := scanLoad(tx.QueryRow(ctx, `SELECT `+loadColumns+` FROM loads WHERE workflow_id = $1 OR load_id = $2`, nl.WorkflowID, nl.LoadID))
	if err == nil {
		if same.sameRequest(nl) {
			return same, nil
		}
		return Load{}, fmt.Errorf("%w: load %s is recorded with other content", ErrConflict, same.WorkflowID)
	}
	if !errors.Is(err, ErrNotFound) {
		return Load{}, err
	}
	used, err := scanLoad(tx.QueryRow(ctx, `SELECT `+loadColumns+` FROM loads WHERE token_serial = $1 AND sequence = $2`,
		nl.TokenSerial, int64(nl.Sequence)))
	if err == nil {
		return Load{}, fmt.Errorf("%w: sequence %d of key %s is load %s (%s)", ErrSequenceUsed, nl.Sequence, nl.TokenSerial, used.LoadID, used.Status)
	}
	if !errors.Is(err, ErrNotFound) {
		return Load{}, err
	}
	open, err := scanLoad(tx.QueryRow(ctx, `SELECT `+loadColumns+` FROM loads WHERE token_serial = $1 AND status IN ('verified', 'debited', 'allowed')`,
		nl.TokenSerial))
	if err == nil {
		return Load{}, &PendingLoadError{Load: open}
	}
	if !errors.Is(err, ErrNotFound) {
		return Load{}, err
	}
	return Load{}, fmt.Errorf("%w: load %s conflicts with a record that is gone", ErrConflict, nl.WorkflowID)
}

// PendingLoadError is ErrLoadPending with the load in flight.
type PendingLoadError struct{ Load Load }

func (e *PendingLoadError) Error() string {
	msg := fmt.Sprintf("%v: load %d of key %s is %s", ErrLoadPending, e.Load.Sequence, e.Load.TokenSerial, e.Load.Status)
	if e.Load.AllowExpiresAt != nil {
		msg += fmt.Sprintf(" (its allow expires at %s)", e.Load.AllowExpiresAt.Format(time.RFC3339))
	}
	return msg
}

// Is makes errors.Is(err, ErrLoadPending) true.
func (e *PendingLoadError) Is(target error) bool { return target == ErrLoadPending }

// LoadAllowRecord is the allow handed out for a load.
type LoadAllowRecord struct {
	// SHA256 is of the encoding of the wallet state the allow sets:
	// signing the same state again is the same allow, whatever the
	// signature bytes, and the receipt must carry back exactly this state.
	SHA256     []byte
	At         time.Time
	ExpiresAt  time.Time
	NewBalance int64
}

// MarkLoadDebited records the platform's debit of a verified load, under
// its entry key. Again with the same key is a no-op.
func MarkLoadDebited(ctx context.Context, q Querier, workflowID, debitKey string, at time.Time, actor string) (_ Load, err error) {
	defer derrors.Wrap(&err, "store.MarkLoadDebited(ctx, %q)", workflowID)
	if debitKey == "" || at.IsZero() {
		return Load{}, fmt.Errorf("%w: a debit needs its key and time", ErrInvalid)
	}
	return loadTransition(ctx, q, workflowID, LoadDebited, actor,
		func(cur Load) (bool, error) {
			if cur.DebitKey == "" {
				return false, nil
			}
			if cur.DebitKey != debitKey {
				return false, fmt.Errorf("%w: load %s was debited as %s, not %s", ErrConflict, workflowID, cur.DebitKey, debitKey)
			}
			return true, nil
		},
		`debit_key = $2, debited_at = $3`, []any{debitKey, at.UTC()}, map[string]any{"debit_key": debitKey})
}

// MarkLoadRejected records that a verified load was refused before any
// money moved, with the reason the customer sees. Again is a no-op.
func MarkLoadRejected(ctx context.Context, q Querier, workflowID, reason, actor string) (_ Load, err error) {
	defer derrors.Wrap(&err, "store.MarkLoadRejected(ctx, %q)", workflowID)
	return loadTransition(ctx, q, workflowID, LoadRejected, actor,
		func(cur Load) (bool, error) { return cur.Status == LoadRejected, nil },
		`reason = $2`, []any{reason}, map[string]any{"reason": reason})
}

// MarkLoadAllowed records the allow handed out for a debited load. The same
// allow content again is a no-op; another is ErrConflict.
func MarkLoadAllowed(ctx context.Context, q Querier, workflowID string, a LoadAllowRecord, actor string) (_ Load, err error) {
	defer derrors.Wrap(&err, "store.MarkLoadAllowed(ctx, %q)", workflowID)
	if len(a.SHA256) != 32 || a.At.IsZero() || !a.ExpiresAt.After(a.At) {
		return Load{}, fmt.Errorf("%w: an allow needs its hash, time and a later expiry", ErrInvalid)
	}
	return loadTransition(ctx, q, workflowID, LoadAllowed, actor,
		func(cur Load) (bool, error) {
			if cur.StateSHA256 == nil {
				if cur.Status == LoadDebited && cur.WalletBalance+cur.Amount != a.NewBalance {
					return false, fmt.Errorf("%w: load %s sets the balance to %d, not %d", ErrConflict, workflowID, cur.WalletBalance+cur.Amount, a.NewBalance)
				}
				return false, nil
			}
			if !bytes.Equal(cur.StateSHA256, a.SHA256) {
				return false, fmt.Errorf("%w: load %s has another allow", ErrConflict, workflowID)
			}
			return true, nil
		},
		`state_sha256 = $2, allowed_at = $3, allow_expires_at = $4, new_balance = $5`,
		[]any{a.SHA256, a.At.UTC(), a.ExpiresAt.UTC(), a.NewBalance},
		map[string]any{"state_sha256": hex.EncodeToString(a.SHA256), "expires_at": a.ExpiresAt.UTC().Format(time.RFC3339),
			"new_balance_fen": a.NewBalance})
}

// MarkLoadConfirmed records that the wallet took an allowed load: by the
// key's receipt or its next contact, or (for an unbound key) an operator.
// Again is a no-op.
func MarkLoadConfirmed(ctx context.Context, q Querier, workflowID, by string, reportSHA256 []byte, at time.Time, actor string) (_ Load, err error) {
	defer derrors.Wrap(&err, "store.MarkLoadConfirmed(ctx, %q)", workflowID)
	if by != ConfirmedByReceipt && by != ConfirmedByContact && by != ConfirmedByOperator || at.IsZero() {
		return Load{}, fmt.Errorf("%w: confirmed by %q", ErrInvalid, by)
	}
	var report any
	if reportSHA256 != nil {
		report = reportSHA256
	}
	return loadTransition(ctx, q, workflowID, LoadConfirmed, actor,
		func(cur Load) (bool, error) { return cur.Status == LoadConfirmed, nil },
		`confirmed_at = $2, confirmed_by = $3, report_sha256 = $4`, []any{at.UTC(), by, report},
		map[string]any{"confirmed_by": by, "report_sha256": hex.EncodeToString(reportSHA256)})
}

// MarkLoadRefunded records that a debited load's amount was credited back
// to the prepaid account under refundKey, with the reason. Again with the
// same key is a no-op.
func MarkLoadRefunded(ctx context.Context, q Querier, workflowID, refundKey, reason string, at time.Time, actor string) (_ Load, err error) {
	defer derrors.Wrap(&err, "store.MarkLoadRefunded(ctx, %q)", workflowID)
	if refundKey == "" || at.IsZero() {
		return Load{}, fmt.Errorf("%w: a refund needs its key and time", ErrInvalid)
	}
	return loadTransition(ctx, q, workflowID, LoadRefunded, actor,
		func(cur Load) (bool, error) {
			if cur.Status != LoadRefunded {
				return false, nil
			}
			if cur.RefundKey != refundKey {
				return false, fmt.Errorf("%w: load %s was refunded as %s, not %s", ErrConflict, workflowID, cur.RefundKey, refundKey)
			}
			return true, nil
		},
		`refund_key = $2, refunded_at = $3, reason = $4`, []any{refundKey, at.UTC(), reason},
		map[string]any{"refund_key": refundKey, "reason": reason})
}

// loadTransition moves a load to status `to` under a row lock, with the
// audit entry "load.<to>" in the same transaction (see transition for
// payments: done decides a no-op or a conflict, the table the rest).
func loadTransition(ctx context.Context, q Querier, workflowID string, to LoadStatus, actor string,
	done func(Load) (bool, error), set string, args []any, detail map[string]any) (Load, error) {
	tx, err := q.Begin(ctx)
	if err != nil {
		return Load{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	cur, err := scanLoad(tx.QueryRow(ctx, `SELECT `+loadColumns+` FROM loads WHERE workflow_id = $1 FOR UPDATE`, workflowID))
	if err != nil {
		return Load{}, err
	}
	already, err := done(cur)
	if err != nil {
		return Load{}, err
	}
	if already {
		return cur, nil
	}
	if !slices.Contains(nextLoadStatuses[cur.Status], to) {
		return Load{}, fmt.Errorf("%w: load %s is %s and cannot become %s", ErrIllegalTransition, workflowID, cur.Status, to)
	}
	l, err := scanLoad(tx.QueryRow(ctx, `UPDATE loads SET status = '`+string(to)+`', updated_at = now(), `+set+`
		WHERE id = $1 RETURNING `+loadColumns, append([]any{cur.ID}, args...)...))
	if err != nil {
		return Load{}, err
	}
	d := loadDetail(l)
	d["from"] = string(cur.Status)
	for k, v := range detail {
		d[k] = v
	}
	outcome := OutcomeOK
	if to == LoadRejected {
		outcome = OutcomeRefused
	}
	if _, err := AppendAudit(ctx, tx, AuditRecord{Actor: actor, Action: "load." + string(to), Subject: l.WorkflowID,
		Outcome: outcome, Detail: d}); err != nil {
		return Load{}, err
	}
	return l, tx.Commit(ctx)
}

// LoadByWorkflowID returns the load of a workflow.
func LoadByWorkflowID(ctx context.Context, q Querier, workflowID string) (Load, error) {
	return scanLoad(q.QueryRow(ctx, `SELECT `+loadColumns+` FROM loads WHERE workflow_id = $1`, workflowID))
}

// LoadByLoadID returns a load by its load ID.
func LoadByLoadID(ctx context.Context, q Querier, loadID string) (Load, error) {
	return scanLoad(q.QueryRow(ctx, `SELECT `+loadColumns+` FROM loads WHERE load_id = $1`, loadID))
}

// OpenLoads lists the token's loads in flight (at most one, by the
// loads_open_token index).
func OpenLoads(ctx context.Context, q Querier, tokenSerial string) (_ []Load, err error) {
	defer derrors.Wrap(&err, "store.OpenLoads(ctx, %q)", tokenSerial)
	return listLoads(ctx, q, `WHERE token_serial = $1 AND status IN ('verified', 'debited', 'allowed') ORDER BY sequence`, tokenSerial)
}

// LastConfirmedLoad returns the token's confirmed load with the highest
// sequence: the wallet state GridPay last signed and knows the key holds.
// ErrNotFound if the key never took a load.
func LastConfirmedLoad(ctx context.Context, q Querier, tokenSerial string) (Load, error) {
	return scanLoad(q.QueryRow(ctx, `SELECT `+loadColumns+` FROM loads WHERE token_serial = $1 AND status = 'confirmed'
		ORDER BY sequence DESC LIMIT 1`, tokenSerial))
}

// MaxLoadSequence returns the highest sequence the token has used, 0 if
// none.
func MaxLoadSequence(ctx context.Context, q Querier, tokenSerial string) (_ uint64, err error) {
	defer derrors.Wrap(&err, "store.MaxLoadSequence(ctx, %q)", tokenSerial)
	var n int64
	if err := q.QueryRow(ctx, `SELECT coalesce(max(sequence), 0) FROM loads WHERE token_serial = $1`, tokenSerial).Scan(&n); err != nil {
		return 0, translate(err)
	}
	return uint64(n), nil
}

// LoadsForCustomer lists a customer's loads, newest first, at most limit
// (0: 100).
func LoadsForCustomer(ctx context.Context, q Querier, customerID string, limit int) (_ []Load, err error) {
	defer derrors.Wrap(&err, "store.LoadsForCustomer(ctx, %q)", customerID)
	if limit <= 0 {
		limit = 100
	}
	return listLoads(ctx, q, `WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, customerID, limit)
}

// LoadFilter selects loads for operators; empty fields select all.
type LoadFilter struct {
	CustomerID  string
	TokenSerial string
	OpenOnly    bool // verified, debited or allowed: not settled yet
	Limit       int  // 0: 100
}

// ListLoads lists the loads a filter selects, newest first.
func ListLoads(ctx context.Context, q Querier, f LoadFilter) (_ []Load, err error) {
	defer derrors.Wrap(&err, "store.ListLoads(ctx, %+v)", f)
	if f.Limit <= 0 {
		f.Limit = 100
	}
	return listLoads(ctx, q, `WHERE ($1 = '' OR customer_id = $1) AND ($2 = '' OR token_serial = $2)
		AND (NOT $3 OR status IN ('verified', 'debited', 'allowed')) ORDER BY created_at DESC, id DESC LIMIT $4`,
		f.CustomerID, f.TokenSerial, f.OpenOnly, f.Limit)
}

func listLoads(ctx context.Context, q Querier, where string, args ...any) ([]Load, error) {
	rows, err := q.Query(ctx, `SELECT `+loadColumns+` FROM loads `+where, args...)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []Load
	for rows.Next() {
		l, err := scanLoad(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, translate(rows.Err())
}

// LoadViolation is a load that breaks the money invariant.
type LoadViolation struct {
	LoadID     string
	WorkflowID string
	Status     LoadStatus
	Problem    string
	// Open is true when the load is merely in flight (verified, debited,
	// allowed): a violation only once its workflow is closed.
	Open bool
}

func (v LoadViolation) String() string {
	return fmt.Sprintf("load %s (%s, %s): %s", v.LoadID, v.WorkflowID, v.Status, v.Problem)
}

// CheckLoadInvariants checks the money invariant over every load: a debit
// ends as a wallet credit (confirmed) or a refund, exactly one, never both,
// never neither; nothing undebited is confirmed or refunded. It reads the
// rows and the audit log (one "load.debited", "load.confirmed" or
// "load.refunded" entry per load at most), so a load debited or refunded
// twice shows up although its row can say it only once. Loads in flight
// come back with Open set.
func CheckLoadInvariants(ctx context.Context, q Querier) (_ []LoadViolation, err error) {
	defer derrors.Wrap(&err, "store.CheckLoadInvariants")
	rows, err := q.Query(ctx, `
		WITH events AS (
			SELECT subject,
				count(*) FILTER (WHERE action = 'load.debited')   AS debited,
				count(*) FILTER (WHERE action = 'load.confirmed') AS confirmed,
				count(*) FILTER (WHERE action = 'load.refunded')  AS refunded
			FROM audit_log WHERE action IN ('load.debited', 'load.confirmed', 'load.refunded') GROUP BY subject
		)
		SELECT l.load_id, l.workflow_id, l.status, l.debited_at IS NOT NULL, l.confirmed_at IS NOT NULL, l.refunded_at IS NOT NULL,
			coalesce(e.debited, 0), coalesce(e.confirmed, 0), coalesce(e.refunded, 0)
		FROM loads l LEFT JOIN events e ON e.subject = l.workflow_id
		ORDER BY l.id`)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []LoadViolation
	for rows.Next() {
		var (
			v                            LoadViolation
			status                       string
			debited, confirmed, refunded bool
			nDeb, nConf, nRef            int64
		)
		if err := rows.Scan(&v.LoadID, &v.WorkflowID, &status, &debited, &confirmed, &refunded, &nDeb, &nConf, &nRef); err != nil {
			return nil, translate(err)
		}
		v.Status = LoadStatus(status)
		report := func(open bool, format string, args ...any) {
			w := v
			w.Open, w.Problem = open, fmt.Sprintf(format, args...)
			out = append(out, w)
		}
		switch {
		case confirmed && refunded:
			report(false, "both credited to the wallet and refunded")
		case debited && !confirmed && !refunded:
			report(v.Status.Open(), "debited but neither confirmed nor refunded")
		case !debited && (confirmed || refunded):
			report(false, "confirmed or refunded without a debit")
		case v.Status == LoadVerified:
			report(true, "the debit is not made yet")
		}
		if nDeb > 1 || nConf > 1 || nRef > 1 {
			report(false, "audit log records %d debits, %d confirmations and %d refunds", nDeb, nConf, nRef)
		}
		if nConf > 0 && nRef > 0 {
			report(false, "audit log records both a confirmation and a refund")
		}
		if (nDeb == 1) != debited || (nConf == 1) != confirmed || (nRef == 1) != refunded {
			report(false, "audit log (%d debits, %d confirmations, %d refunds) disagrees with the record", nDeb, nConf, nRef)
		}
	}
	return out, translate(rows.Err())
}

// LoadTotals sums GridPay's loads in fen, for comparing with the
// platform's prepaid entries and the wallets.
type LoadTotals struct {
	Loads     int   // recorded (any status)
	Debited   int64 // taken from prepaid accounts (debited, allowed, confirmed, refunded)
	Confirmed int64 // credited to wallets
	Refunded  int64 // credited back to prepaid accounts
	// InFlight is debited but neither confirmed nor refunded yet.
	InFlight int64
}

// SumLoads returns the totals over every load.
func SumLoads(ctx context.Context, q Querier) (_ LoadTotals, err error) {
	defer derrors.Wrap(&err, "store.SumLoads")
	var t LoadTotals
	err = q.QueryRow(ctx, `SELECT count(*),
		coalesce(sum(amount) FILTER (WHERE debited_at IS NOT NULL), 0),
		coalesce(sum(amount) FILTER (WHERE status = 'confirmed'), 0),
		coalesce(sum(amount) FILTER (WHERE status = 'refunded'), 0),
		coalesce(sum(amount) FILTER (WHERE status IN ('debited', 'allowed')), 0)
		FROM loads`).Scan(&t.Loads, &t.Debited, &t.Confirmed, &t.Refunded, &t.InFlight)
	return t, translate(err)
}

// Loads is the load records as the load activities and the gateway use
// them (activities.LoadRecords): each method is the function of the same
// name on the pool, every write with its audit entry in one transaction.
type Loads struct{ DB *DB }

func (s Loads) Certificate(ctx context.Context, serial string) (Certificate, error) {
	return GetCertificate(ctx, s.DB, serial)
}

func (s Loads) ActiveBindingForCert(ctx context.Context, serial string) (Binding, error) {
	return ActiveBindingForCert(ctx, s.DB, serial)
}

func (s Loads) IsRevoked(ctx context.Context, serial string) (bool, error) {
	return IsRevoked(ctx, s.DB, serial)
}

func (s Loads) RecordNonce(ctx context.Context, tokenSerial string, nonce []byte, workflowID string, at time.Time, rec *AuditRecord) error {
	return RecordNonce(ctx, s.DB, tokenSerial, nonce, workflowID, at, rec)
}

func (s Loads) Audit(ctx context.Context, rec AuditRecord) error {
	_, err := AppendAudit(ctx, s.DB, rec)
	return err
}

func (s Loads) CreateLoad(ctx context.Context, nl NewLoad, actor string) (Load, error) {
	return CreateLoad(ctx, s.DB, nl, actor)
}

func (s Loads) MarkDebited(ctx context.Context, workflowID, debitKey string, at time.Time, actor string) (Load, error) {
	return MarkLoadDebited(ctx, s.DB, workflowID, debitKey, at, actor)
}

func (s Loads) MarkRejected(ctx context.Context, workflowID, reason, actor string) (Load, error) {
	return MarkLoadRejected(ctx, s.DB, workflowID, reason, actor)
}

func (s Loads) MarkAllowed(ctx context.Context, workflowID string, a LoadAllowRecord, actor string) (Load, error) {
	return MarkLoadAllowed(ctx, s.DB, workflowID, a, actor)
}

func (s Loads) MarkConfirmed(ctx context.Context, workflowID, by string, reportSHA256 []byte, at time.Time, actor string) (Load, error) {
	return MarkLoadConfirmed(ctx, s.DB, workflowID, by, reportSHA256, at, actor)
}

func (s Loads) MarkRefunded(ctx context.Context, workflowID, refundKey, reason string, at time.Time, actor string) (Load, error) {
	return MarkLoadRefunded(ctx, s.DB, workflowID, refundKey, reason, at, actor)
}

func (s Loads) LoadByWorkflowID(ctx context.Context, workflowID string) (Load, error) {
	return LoadByWorkflowID(ctx, s.DB, workflowID)
}

func (s Loads) OpenLoads(ctx context.Context, tokenSerial string) ([]Load, error) {
	return OpenLoads(ctx, s.DB, tokenSerial)
}

func (s Loads) LastConfirmedLoad(ctx context.Context, tokenSerial string) (Load, error) {
	return LastConfirmedLoad(ctx, s.DB, tokenSerial)
}

func (s Loads) MaxLoadSequence(ctx context.Context, tokenSerial string) (uint64, error) {
	return MaxLoadSequence(ctx, s.DB, tokenSerial)
}

func (s Loads) LoadsForCustomer(ctx context.Context, customerID string) ([]Load, error) {
	return LoadsForCustomer(ctx, s.DB, customerID, 100)
}
