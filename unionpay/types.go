// Package unionpay is GridPay's client of the China UnionPay online payment
// gateway (ACP 5.1.0 style): the front consume form that takes the payer's
// browser to the gateway's pay page (txnType 01), query (00), refund (04),
// cancel (31), the reconciliation file (76), and the asynchronous back
// notifications. Every request is signed with the merchant key (a
// crypto.Signer: HSM in production, a file in development) and every
// response and notification is verified with the gateway's certificate.
//
// Amounts are money.Fen; times are the gateway's, in Asia/Shanghai
// (YYYYMMDDhhmmss). A respCode of 00 on a request means "accepted", not
// "paid": the outcome of a transaction is what a query reports in
// origRespCode, or what a verified notification says.
package unionpay

import (
	"time"

	"github.com/gridpay/gridpay/money"
)

// Transaction types (txnType).
const (
	TxnQuery        = "00"
	TxnConsume      = "01"
	TxnRefund       = "04"
	TxnCancel       = "31"
	TxnFileDownload = "76"
)

// Response codes with a meaning of their own.
const (
	RespSuccess   = "00" // accepted / succeeded
	RespNotFound  = "34" // no such order (yet): the outcome is still unknown
	RespUnknown03 = "03" // transaction being processed: query again
	RespUnknown04 = "04"
	RespUnknown05 = "05"
	RespDuplicate = "12" // duplicate transaction (same orderId and txnTime)
)

// Outcome is what a response code says about a transaction.
type Outcome int

const (
	// Unknown: not decided yet, or not known to us; query again later.
	// Never treated as paid or as failed.
	Unknown Outcome = iota
	// Succeeded: the transaction went through (paid, refunded, cancelled).
	Succeeded
	// Failed: the transaction did not go through and will not.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Succeeded:
		return "succeeded"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Classify maps a transaction's response code (origRespCode of a query, or
// respCode of a notification) to an outcome: 00 succeeded; 03, 04, 05 and
// 34 unknown; anything else failed.
func Classify(code string) Outcome {
	switch code {
	case RespSuccess:
		return Succeeded
	case RespUnknown03, RespUnknown04, RespUnknown05, RespNotFound, "":
		return Unknown
	}
	return Failed
}

// Order is a consume (payment) order.
type Order struct {
	// OrderID is the merchant's order number: 8–32 letters and digits,
	// unique per merchant and day.
	OrderID string
	// TxnTime is when the order was sent (the gateway's key with OrderID).
	TxnTime time.Time
	Amount  money.Fen
	// PayTimeout is the last moment the payer may pay; the gateway refuses
	// payment after it.
	PayTimeout time.Time
	// FrontURL is where the payer's browser returns after paying; BackURL
	// receives the asynchronous notification.
	FrontURL string
	BackURL  string
	// Description is shown on the pay page (orderDesc); no personal data.
	Description string
}

// Form is a signed HTML form: posting Fields to Action takes the payer to
// the gateway's pay page.
type Form struct {
	Action string            `json:"action"`
	Fields map[string]string `json:"fields"`
}

// QueryResult is the answer of a query (txnType 00) for one transaction.
type QueryResult struct {
	OrderID string
	TxnTime time.Time
	// RespCode is the query's own result: 00 (found, see OrigRespCode),
	// 34 (no such order), 03/04/05 (try later), others (query refused).
	RespCode string
	RespMsg  string
	// OrigRespCode and OrigRespMsg are the transaction's result.
	OrigRespCode string
	OrigRespMsg  string
	TxnType      string
	QueryID      string // the gateway's transaction ID (queryId)
	Amount       money.Fen
	SettleDate   string // MMDD
	// Outcome is the transaction's outcome as far as the query can tell:
	// Unknown unless RespCode is 00 and OrigRespCode decides it.
	Outcome Outcome
}

// Notification is a verified back notification.
type Notification struct {
	TxnType     string
	OrderID     string
	TxnTime     time.Time
	QueryID     string
	OrigQueryID string // for refunds and cancels: the consume's queryId
	RespCode    string
	RespMsg     string
	Amount      money.Fen
	SettleDate  string
	// Outcome is Classify(RespCode).
	Outcome Outcome
}

// RefundRequest refunds (part of) a settled consume: txnType 04, or a
// same-day full cancel, txnType 31.
type RefundRequest struct {
	// OrderID is the refund's own order number (8–32 letters and digits).
	OrderID     string
	TxnTime     time.Time
	OrigQueryID string
	Amount      money.Fen
	BackURL     string
}

// Accepted is the answer of a refund or cancel request: RespCode 00 means
// accepted, not done; the outcome comes from a notification or a query of
// the request's own OrderID and TxnTime.
type Accepted struct {
	RespCode string
	RespMsg  string
	QueryID  string
	// Outcome of the request as far as its answer tells: Failed for a
	// refusal, Unknown otherwise (03/04/05, or 00 pending settlement).
	Outcome Outcome
}

// ReconRecord is one transaction of the reconciliation file (txnType 76).
type ReconRecord struct {
	TxnType     string
	OrderID     string
	QueryID     string
	OrigQueryID string
	TxnTime     time.Time
	Amount      money.Fen
	SettleDate  string
	RespCode    string
}
