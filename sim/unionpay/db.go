package simunionpay

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/store"
	"github.com/gridpay/gridpay/unionpay"
)

// Schema is the PostgreSQL schema of the simulator's tables; it can live in
// GridPay's own database without touching GridPay's tables.
const Schema = "unionpay_sim"

// The simulator's migrations, applied at start. Applied migrations are
// history: change the schema by adding a file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLock serialises simulators migrating the same database at once
// ("upsm" in ASCII).
const migrateLock = 0x7570736d

// migrate creates the schema and applies the pending migrations, all in one
// transaction.
func migrate(ctx context.Context, db *store.DB) error {
	return store.MigrateSchema(ctx, db, migrationFiles, "migrations", Schema, migrateLock)
}

// Status is the state of a transaction at the simulated gateway.
type Status string

const (
	StatusPending   Status = "pending"   // consume: waiting for the payer; refund/cancel: accepted, being processed
	StatusSucceeded Status = "succeeded" // RespCode 00
	StatusFailed    Status = "failed"    // RespCode says why
)

// Transaction is a consume, refund or cancel as the simulator holds it.
type Transaction struct {
	QueryID     string    `json:"query_id"`
	MerID       string    `json:"mer_id"`
	OrderID     string    `json:"order_id"`
	TxnTime     string    `json:"txn_time"` // YYYYMMDDhhmmss, as the merchant sent it
	TxnType     string    `json:"txn_type"` // 01, 04, 31
	Amount      money.Fen `json:"amount"`
	OrigQueryID string    `json:"orig_query_id,omitempty"`
	Status      Status    `json:"status"`
	RespCode    string    `json:"resp_code,omitempty"` // empty while pending
	RespMsg     string    `json:"resp_msg,omitempty"`
	FrontURL    string    `json:"front_url,omitempty"`
	BackURL     string    `json:"back_url"`
	PayTimeout  time.Time `json:"pay_timeout,omitzero"`
	Description string    `json:"description,omitempty"`
	CardLast4   string    `json:"card_last4,omitempty"`
	TraceNo     string    `json:"trace_no"`
	SettleDate  string    `json:"settle_date,omitempty"` // MMDD, once succeeded
	SettleDay   time.Time `json:"settle_day,omitzero"`   // the full date (midnight Shanghai)
	CreatedAt   time.Time `json:"created_at"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`

	payToken      string
	requestDigest string
	processAt     time.Time
}

// ErrNotFound: no such transaction.
var ErrNotFound = errors.New("simunionpay: not found")

const txnColumns = `query_id, mer_id, order_id, txn_time, txn_type, amount, coalesce(orig_query_id, ''), status,
	coalesce(resp_code, ''), coalesce(resp_msg, ''), coalesce(front_url, ''), back_url, pay_timeout, description,
	coalesce(pay_token, ''), coalesce(card_last4, ''), request_digest, trace_no, settle_day, process_at, created_at, finished_at`

func scanTxn(row pgx.Row) (Transaction, error) {
	var t Transaction
	var payTimeout, settleDay, processAt, finishedAt *time.Time
	err := row.Scan(&t.QueryID, &t.MerID, &t.OrderID, &t.TxnTime, &t.TxnType, &t.Amount, &t.OrigQueryID, &t.Status,
		&t.RespCode, &t.RespMsg, &t.FrontURL, &t.BackURL, &payTimeout, &t.Description,
		&t.payToken, &t.CardLast4, &t.requestDigest, &t.TraceNo, &settleDay, &processAt, &t.CreatedAt, &finishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Transaction{}, ErrNotFound
	}
	if err != nil {
		return Transaction{}, err
	}
	if payTimeout != nil {
		t.PayTimeout = *payTimeout
	}
	if settleDay != nil {
		// A date column comes back as UTC midnight; the day is Shanghai's.
		d := *settleDay
		t.SettleDay = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, unionpay.Shanghai)
		t.SettleDate = t.SettleDay.Format("0102")
	}
	if processAt != nil {
		t.processAt = *processAt
	}
	if finishedAt != nil {
		t.FinishedAt = *finishedAt
	}
	return t, nil
}

func txnByKey(ctx context.Context, q store.Querier, merID, orderID, txnTime string, lock bool) (Transaction, error) {
	sql := `SELECT ` + txnColumns + ` FROM ` + Schema + `.transactions WHERE mer_id = $1 AND order_id = $2 AND txn_time = $3`
	if lock {
		sql += ` FOR UPDATE`
	}
	return scanTxn(q.QueryRow(ctx, sql, merID, orderID, txnTime))
}

func txnByQueryID(ctx context.Context, q store.Querier, queryID string, lock bool) (Transaction, error) {
	sql := `SELECT ` + txnColumns + ` FROM ` + Schema + `.transactions WHERE query_id = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	return scanTxn(q.QueryRow(ctx, sql, queryID))
}

func txnByToken(ctx context.Context, q store.Querier, token string, lock bool) (Transaction, error) {
	sql := `SELECT ` + txnColumns + ` FROM ` + Schema + `.transactions WHERE pay_token = $1`
	if lock {
		sql += ` FOR UPDATE`
	}
	return scanTxn(q.QueryRow(ctx, sql, token))
}

// newIDs makes a queryId (21 digits: the Shanghai time YYMMDDhhmmss and a
// 9-digit sequence number) and a traceNo (6 digits).
func newIDs(ctx context.Context, q store.Querier, now time.Time) (queryID, traceNo string, err error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT nextval('`+Schema+`.txn_seq')`).Scan(&n); err != nil {
		return "", "", err
	}
	return now.In(unionpay.Shanghai).Format("060102150405") + fmt.Sprintf("%09d", n%1_000_000_000),
		fmt.Sprintf("%06d", n%1_000_000), nil
}

func insertTxn(ctx context.Context, q store.Querier, t *Transaction) error {
	var payTimeout, processAt *time.Time
	if !t.PayTimeout.IsZero() {
		payTimeout = &t.PayTimeout
	}
	if !t.processAt.IsZero() {
		processAt = &t.processAt
	}
	_, err := q.Exec(ctx, `INSERT INTO `+Schema+`.transactions
		(query_id, mer_id, order_id, txn_time, txn_type, amount, orig_query_id, status, front_url, back_url,
		 pay_timeout, description, pay_token, request_digest, trace_no, process_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, nullif($7, ''), 'pending', nullif($8, ''), $9, $10, $11, nullif($12, ''), $13, $14, $15, $16)`,
		t.QueryID, t.MerID, t.OrderID, t.TxnTime, t.TxnType, t.Amount, t.OrigQueryID, t.FrontURL, t.BackURL,
		payTimeout, t.Description, t.payToken, t.requestDigest, t.TraceNo, processAt, t.CreatedAt)
	return err
}

// finishTxn records the final state of a pending transaction.
func finishTxn(ctx context.Context, q store.Querier, t *Transaction) error {
	var settleDay *string
	if t.Status == StatusSucceeded {
		s := t.SettleDay.Format(time.DateOnly)
		settleDay = &s
	}
	tag, err := q.Exec(ctx, `UPDATE `+Schema+`.transactions
		SET status = $2, resp_code = $3, resp_msg = $4, settle_day = $5::date, card_last4 = nullif($6, ''), finished_at = $7
		WHERE query_id = $1 AND status = 'pending'`,
		t.QueryID, t.Status, t.RespCode, t.RespMsg, settleDay, t.CardLast4, t.FinishedAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("transaction %s is no longer pending", t.QueryID)
	}
	return nil
}

// reversals lists the refunds and cancels of a consume that are pending or
// succeeded: the ones that take money back.
func reversals(ctx context.Context, q store.Querier, origQueryID string) ([]Transaction, error) {
	rows, err := q.Query(ctx, `SELECT `+txnColumns+` FROM `+Schema+`.transactions
		WHERE orig_query_id = $1 AND status <> 'failed' ORDER BY created_at, query_id`, origQueryID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Transaction, error) { return scanTxn(r) })
}

// TxnFilter selects transactions for Server.Transactions; empty fields
// match everything.
type TxnFilter struct {
	MerID       string
	OrderID     string
	TxnType     string
	OrigQueryID string
	Status      Status
}

func listTxns(ctx context.Context, q store.Querier, f TxnFilter) ([]Transaction, error) {
	rows, err := q.Query(ctx, `SELECT `+txnColumns+` FROM `+Schema+`.transactions
		WHERE ($1 = '' OR mer_id = $1) AND ($2 = '' OR order_id = $2) AND ($3 = '' OR txn_type = $3)
		  AND ($4 = '' OR orig_query_id = $4) AND ($5 = '' OR status = $5)
		ORDER BY created_at, query_id`, f.MerID, f.OrderID, f.TxnType, f.OrigQueryID, string(f.Status))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Transaction, error) { return scanTxn(r) })
}

// settledOn lists a merchant's transactions that succeeded on a day.
func settledOn(ctx context.Context, q store.Querier, merID string, day time.Time) ([]Transaction, error) {
	rows, err := q.Query(ctx, `SELECT `+txnColumns+` FROM `+Schema+`.transactions
		WHERE mer_id = $1 AND status = 'succeeded' AND settle_day = $2::date ORDER BY finished_at, query_id`,
		merID, day.Format(time.DateOnly))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Transaction, error) { return scanTxn(r) })
}

// NotificationState is where a back notification stands.
type NotificationState string

const (
	NotifyPending   NotificationState = "pending"   // more sends to come
	NotifyDelivered NotificationState = "delivered" // the merchant answered 200
	NotifyGivenUp   NotificationState = "given_up"  // five sends without a 200
	NotifyDropped   NotificationState = "dropped"   // the drop fault swallowed it
)

// NotificationRecord is a back notification and its sends.
type NotificationRecord struct {
	ID          int64             `json:"id"`
	QueryID     string            `json:"query_id"`
	URL         string            `json:"url"`
	Fields      map[string]string `json:"fields"`
	State       NotificationState `json:"state"`
	Sends       int               `json:"sends"`
	CreatedAt   time.Time         `json:"created_at"`
	DeliveredAt time.Time         `json:"delivered_at,omitzero"`
	Deliveries  []Delivery        `json:"deliveries"`

	nextAt time.Time
}

// Delivery is one HTTP POST of a notification.
type Delivery struct {
	Send       int       `json:"send"` // 1..5 in the resend schedule
	Copy       int       `json:"copy"` // >1: a duplicate made by the duplicate fault
	SentAt     time.Time `json:"sent_at"`
	HTTPStatus int       `json:"http_status,omitempty"` // 0: no answer
	Error      string    `json:"error,omitempty"`
}

func enqueueNotification(ctx context.Context, q store.Querier, queryID, url string, fields map[string]string, state NotificationState, nextAt, now time.Time) error {
	var next *time.Time
	if state == NotifyPending {
		next = &nextAt
	}
	_, err := q.Exec(ctx, `INSERT INTO `+Schema+`.notifications (query_id, url, fields, state, next_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, queryID, url, fields, state, next, now)
	return err
}

const notificationColumns = `id, query_id, url, fields, state, sends, next_at, created_at, delivered_at`

func scanNotification(row pgx.Row) (NotificationRecord, error) {
	var n NotificationRecord
	var nextAt, deliveredAt *time.Time
	if err := row.Scan(&n.ID, &n.QueryID, &n.URL, &n.Fields, &n.State, &n.Sends, &nextAt, &n.CreatedAt, &deliveredAt); err != nil {
		return NotificationRecord{}, err
	}
	if nextAt != nil {
		n.nextAt = *nextAt
	}
	if deliveredAt != nil {
		n.DeliveredAt = *deliveredAt
	}
	return n, nil
}

// dueNotifications lists pending notifications due at now (real clock),
// oldest first.
func dueNotifications(ctx context.Context, q store.Querier, now time.Time, limit int) ([]NotificationRecord, error) {
	rows, err := q.Query(ctx, `SELECT `+notificationColumns+` FROM `+Schema+`.notifications
		WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at, id LIMIT $2`, now, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (NotificationRecord, error) { return scanNotification(r) })
}

// nextNotificationAt is when the next pending notification falls due
// (zero: none pending).
func nextNotificationAt(ctx context.Context, q store.Querier) (time.Time, error) {
	var t *time.Time
	if err := q.QueryRow(ctx, `SELECT min(next_at) FROM `+Schema+`.notifications WHERE state = 'pending'`).Scan(&t); err != nil || t == nil {
		return time.Time{}, err
	}
	return *t, nil
}

func recordDelivery(ctx context.Context, q store.Querier, id int64, d Delivery) error {
	var status *int
	if d.HTTPStatus != 0 {
		status = &d.HTTPStatus
	}
	_, err := q.Exec(ctx, `INSERT INTO `+Schema+`.deliveries (notification_id, send, copy, sent_at, http_status, error)
		VALUES ($1, $2, $3, $4, $5, nullif($6, ''))`, id, d.Send, d.Copy, d.SentAt, status, d.Error)
	return err
}

// afterSend records the outcome of send number `send` of a notification.
func afterSend(ctx context.Context, q store.Querier, id int64, send int, state NotificationState, nextAt, now time.Time) error {
	var next, delivered *time.Time
	switch state {
	case NotifyPending:
		next = &nextAt
	case NotifyDelivered:
		delivered = &now
	}
	_, err := q.Exec(ctx, `UPDATE `+Schema+`.notifications SET sends = $2, state = $3, next_at = $4, delivered_at = $5
		WHERE id = $1 AND state = 'pending'`, id, send, state, next, delivered)
	return err
}

func listNotifications(ctx context.Context, q store.Querier, queryID string) ([]NotificationRecord, error) {
	rows, err := q.Query(ctx, `SELECT `+notificationColumns+` FROM `+Schema+`.notifications
		WHERE ($1 = '' OR query_id = $1) ORDER BY id`, queryID)
	if err != nil {
		return nil, err
	}
	ns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (NotificationRecord, error) { return scanNotification(r) })
	if err != nil || len(ns) == 0 {
		return ns, err
	}
	byID := map[int64]int{}
	ids := make([]int64, len(ns))
	for i, n := range ns {
		byID[n.ID] = i
		ids[i] = n.ID
		ns[i].Deliveries = []Delivery{}
	}
	rows, err = q.Query(ctx, `SELECT notification_id, send, copy, sent_at, coalesce(http_status, 0), coalesce(error, '')
		FROM `+Schema+`.deliveries WHERE notification_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var d Delivery
		if err := rows.Scan(&id, &d.Send, &d.Copy, &d.SentAt, &d.HTTPStatus, &d.Error); err != nil {
			return nil, err
		}
		i := byID[id]
		ns[i].Deliveries = append(ns[i].Deliveries, d)
	}
	return ns, rows.Err()
}

// dueReversals lists accepted refunds and cancels whose processing time
// has come (real clock), locking them.
func dueReversals(ctx context.Context, q store.Querier, now time.Time, limit int) ([]Transaction, error) {
	rows, err := q.Query(ctx, `SELECT `+txnColumns+` FROM `+Schema+`.transactions
		WHERE status = 'pending' AND process_at <= $1 ORDER BY process_at, query_id LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Transaction, error) { return scanTxn(r) })
}

func nextReversalAt(ctx context.Context, q store.Querier) (time.Time, error) {
	var t *time.Time
	if err := q.QueryRow(ctx, `SELECT min(process_at) FROM `+Schema+`.transactions WHERE status = 'pending' AND process_at IS NOT NULL`).Scan(&t); err != nil || t == nil {
		return time.Time{}, err
	}
	return *t, nil
}

// transact runs fn in a serializable transaction. Two requests racing to
// insert the same transaction collide on its unique key: PostgreSQL
// usually reports that as a serialization failure (retried by
// store.Transact), but may report the unique violation itself; running the
// loser again lets it find the winner's row and answer as a resend.
func (s *Server) transact(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.db.Transact(ctx, store.TxOptions{}, fn)
		var pgErr *pgconn.PgError
		if attempt < 3 && errors.As(err, &pgErr) && pgErr.Code == "23505" {
			continue
		}
		return err
	}
}
