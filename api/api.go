// Package api is the versioned JSON API between the desktop client and the
// gateway (the security server), shared by both so they cannot drift.
//
// Every request travels over TLS 1.3 with the client certificate of the
// customer's USB key; the gateway takes the customer's identity from that
// certificate only, so no request names its customer. Errors are an Error
// body with a stable Code the client maps to a message and an exit code.
package api

import (
	"time"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

// Version is the path prefix of this API.
const Version = "/v1"

// Paths of the API (GET unless stated).
const (
	PathHealth      = Version + "/health"              // no customer data; answers even when the platform is down
	PathMe          = Version + "/me"                  // Me
	PathConsumption = Version + "/consumption"         // ?from=YYYY-MM&to=YYYY-MM → ConsumptionList
	PathBills       = Version + "/bills"               // ?status=unpaid|all&from&to → BillList
	PathBill        = Version + "/bills/"              // + {id} → platform.Bill
	PathArrears     = Version + "/arrears"             // ArrearsSummary
	PathPayments    = Version + "/payments"            // GET ?from=YYYY-MM-DD&to=YYYY-MM-DD → PaymentList; POST PaymentRequest → PaymentOrder
	PathPayment     = Version + "/payments/"           // + {idempotency key} → PaymentStatus
	PathPINFailures = Version + "/events/pin-failures" // POST PINFailureReport → 204
	PathCRLs        = Version + "/crls"                // CRLList: the CRLs the gateway checks with
)

// Limits the gateway enforces.
const (
	// MaxBodyBytes caps a request body.
	MaxBodyBytes = 64 << 10
	// MaxMonths caps a consumption range.
	MaxMonths = 36
)

// Error codes. The client shows Message and maps Code to its exit status.
const (
	CodeNoCertificate      = "no_certificate"      // no client certificate presented
	CodeUnknownCA          = "unknown_ca"          // certificate not issued by the customer CA
	CodeCertExpired        = "certificate_expired" // certificate outside its validity
	CodeCertRevoked        = "certificate_revoked" // certificate revoked (lost, replaced, returned key)
	CodeCertInvalid        = "certificate_invalid" // wrong profile or usage
	CodeNotBound           = "not_bound"           // no active binding for this key
	CodeRateLimited        = "rate_limited"        // too many requests from this key; retry after Retry-After
	CodeNotFound           = "not_found"           // no such resource for this customer
	CodeInvalidRequest     = "invalid_request"     // malformed parameters or JSON
	CodePayloadTooLarge    = "payload_too_large"   // body above MaxBodyBytes
	CodeUnavailable        = "unavailable"         // the platform (or another backend) is down; retry later
	CodeInternal           = "internal"            // a bug on our side; the request ID is in the gateway log
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeUnsupportedVersion = "unsupported_version"
)

// Error is the body of every non-2xx answer.
type Error struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// ErrorBody wraps Error as {"error": {...}}.
type ErrorBody struct {
	Error Error `json:"error"`
}

// CRLList is the answer of PathCRLs: GridPay's current CRLs (DER), one
// per CA. They are signed, so the client checks them against its own copy
// of GridPay's root before trusting them.
type CRLList struct {
	CRLs [][]byte `json:"crls"`
}

// Health is the answer of PathHealth.
type Health struct {
	Status   string    `json:"status"`   // "ok" or "degraded"
	Platform string    `json:"platform"` // "ok" or "unavailable"
	Time     time.Time `json:"time"`
}

// Certificate describes the client certificate the gateway accepted.
type Certificate struct {
	Serial      string    `json:"serial"`
	TokenSerial string    `json:"token_serial"`
	NotAfter    time.Time `json:"not_after"`
}

// Me is the customer behind the certificate, with what a login shows.
type Me struct {
	Customer       platform.Customer        `json:"customer"`
	MeteringPoints []platform.MeteringPoint `json:"metering_points"`
	Certificate    Certificate              `json:"certificate"`
	Alerts         []Alert                  `json:"alerts"`
	// Prepaid is the customer's prepaid account at the company (absent for
	// a customer without one): what loads onto the USB key's wallet.
	Prepaid *platform.PrepaidAccount `json:"prepaid,omitempty"`
}

// AlertLevel orders alerts.
type AlertLevel string

const (
	AlertInfo     AlertLevel = "info"     // a bill is due soon
	AlertWarning  AlertLevel = "warning"  // a bill is overdue; late fees accrue
	AlertCritical AlertLevel = "critical" // long overdue: supply may be suspended
)

// Alert is an arrears or due-date warning shown at login.
type Alert struct {
	Level   AlertLevel `json:"level"`
	BillID  string     `json:"bill_id,omitempty"`
	Message string     `json:"message"`
}

// ConsumptionList is the answer of PathConsumption.
type ConsumptionList struct {
	From  platform.Period        `json:"from"`
	To    platform.Period        `json:"to"`
	Items []platform.Consumption `json:"items"`
}

// BillList is the answer of PathBills.
type BillList struct {
	Items []platform.Bill `json:"items"`
}

// ArrearsSummary is the answer of PathArrears.
type ArrearsSummary struct {
	platform.Arrears
	Alerts []Alert `json:"alerts"`
}

// PaymentList is the answer of PathPayments: the payments the power
// company received (Items), and GridPay's own online payments with their
// outcome, refunded and expired ones included (Online), newest first.
type PaymentList struct {
	Items  []platform.Payment `json:"items"`
	Online []PaymentStatus    `json:"online"`
}

// PINFailureReport tells the gateway, at the next successful login, about
// wrong PINs entered on this key since the last report, for the audit log.
type PINFailureReport struct {
	Failures []PINFailure `json:"failures"`
}

// PINFailure is one wrong PIN entered at the client.
type PINFailure struct {
	At       time.Time `json:"at"`
	Count    int       `json:"count"`  // failures in a row at that moment
	Locked   bool      `json:"locked"` // the client locked the key after this one
	Hostname string    `json:"hostname,omitempty"`
}

// PaymentRequest starts a payment (POST PathPayments): the instruction
// (protocol.PaymentInstruction, encoded) and the USB key's signature over
// its digest. The instruction names the idempotency key, the customer, the
// bills or the prepaid top-up, and the amount; the gateway checks it against
// the certificate. Sending the same instruction again returns the same
// payment.
type PaymentRequest struct {
	Instruction []byte `json:"instruction"`
	Signature   []byte `json:"signature"`
}

// PaymentOrder is the answer to a PaymentRequest: where to pay.
type PaymentOrder struct {
	Key      string    `json:"key"`
	OrderID  string    `json:"order_id"`
	Amount   Amount    `json:"amount"`
	PayURL   string    `json:"pay_url"` // opens UnionPay's pay page in a browser
	Deadline time.Time `json:"deadline"`
	Status   string    `json:"status"`
}

// PaymentStatus is the live state of a payment (GET PathPayment + key).
type PaymentStatus struct {
	Key        string     `json:"key"`
	Status     string     `json:"status"` // awaiting_payment, paid, posted, refunding, refunded, expired, rejected
	Kind       string     `json:"kind"`   // bills or prepay
	BillIDs    []string   `json:"bill_ids,omitempty"`
	Amount     Amount     `json:"amount"`
	OrderID    string     `json:"order_id,omitempty"`
	Deadline   time.Time  `json:"deadline,omitempty"`
	Reason     string     `json:"reason,omitempty"` // why refunded, expired or rejected
	QueryID    string     `json:"query_id,omitempty"`
	PaidAt     *time.Time `json:"paid_at,omitempty"`
	PostedAt   *time.Time `json:"posted_at,omitempty"`
	RefundedAt *time.Time `json:"refunded_at,omitempty"`
	Final      bool       `json:"final"` // nothing more will happen
}

// Amount is re-exported for API users.
type Amount = money.Fen
