// Package platform is the contract of the power company's payment platform
// web service (customers, metering, consumption, bills, arrears, payments
// received, prepaid accounts) and GridPay's client for it. The contract is
// written down in openapi.yaml beside this file; these types are its Go
// form. The simulator in sim/platform implements the same contract.
//
// Amounts are money.Fen (integer fen); energy is whole kWh; business dates
// are calendar dates in Asia/Shanghai ("2026-11-21"); billing periods are
// months ("2026-10"); instants are RFC 3339 in UTC.
package platform

import (
	"fmt"
	"time"

	"github.com/gridpay/gridpay/money"
)

// Shanghai is the time zone of every business date.
var Shanghai = mustZone("Asia/Shanghai")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		// Without tzdata, fall back to the fixed offset: China has had no
		// daylight saving time since 1991.
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}

// Period is a billing month, "YYYY-MM".
type Period string

// ParsePeriod checks the form of a period.
func ParsePeriod(s string) (Period, error) {
	if _, err := time.Parse("2006-01", s); err != nil || len(s) != 7 {
		return "", fmt.Errorf("period %q is not a month like 2026-10", s)
	}
	return Period(s), nil
}

// PeriodOf is the billing month of an instant, in Shanghai.
func PeriodOf(t time.Time) Period { return Period(t.In(Shanghai).Format("2006-01")) }

// Date is a calendar date in Shanghai, "YYYY-MM-DD".
type Date string

// ParseDate checks the form of a date.
func ParseDate(s string) (Date, error) {
	if _, err := time.Parse(time.DateOnly, s); err != nil || len(s) != 10 {
		return "", fmt.Errorf("date %q is not a date like 2026-11-21", s)
	}
	return Date(s), nil
}

// DateOf is the Shanghai calendar date of an instant.
func DateOf(t time.Time) Date { return Date(t.In(Shanghai).Format(time.DateOnly)) }

// CustomerType is the tariff category of a customer.
type CustomerType string

const (
	LargeIndustry     CustomerType = "large_industry"     // 大工业用电: two-part tariff
	GeneralCommercial CustomerType = "general_commercial" // 一般工商业用电
	Agricultural      CustomerType = "agricultural"       // 农业生产用电
)

// Customer is a customer's profile.
type Customer struct {
	ID            string       `json:"id"`             // customer number (户号), also in the USB key's certificate
	AccountNumber string       `json:"account_number"` // settlement account at the company
	Name          string       `json:"name"`
	Type          CustomerType `json:"type"`
	VoltageGrade  string       `json:"voltage_grade"` // "10kV", "35kV", "110kV", ...
	// ContractCapacityKVA is the transformer capacity the basic charge of
	// a two-part tariff is computed on (0 for single-part tariffs).
	ContractCapacityKVA int64  `json:"contract_capacity_kva"`
	ContactName         string `json:"contact_name"`
	ContactPhone        string `json:"contact_phone"`
	Address             string `json:"address"`
}

// MeteringPoint is a meter of a customer.
type MeteringPoint struct {
	ID          string `json:"id"`
	CustomerID  string `json:"customer_id"`
	MeterNumber string `json:"meter_number"`
	Location    string `json:"location"`
	// Multiplier is the current/voltage transformer ratio applied to the
	// meter's readings.
	Multiplier int64 `json:"multiplier"`
}

// Consumption is one month of one metering point, split by time of use.
type Consumption struct {
	Period          Period `json:"period"`
	MeteringPointID string `json:"metering_point_id"`
	PeakKWh         int64  `json:"peak_kwh"`
	FlatKWh         int64  `json:"flat_kwh"`
	ValleyKWh       int64  `json:"valley_kwh"`
	TotalKWh        int64  `json:"total_kwh"` // peak + flat + valley
}

// BillStatus is where a bill stands.
type BillStatus string

const (
	BillOpen    BillStatus = "open"    // issued, not yet due, not fully paid
	BillOverdue BillStatus = "overdue" // past its due date, not fully paid: late fees accrue daily
	BillSettled BillStatus = "settled" // fully paid
)

// Bill is a monthly electricity bill. AmountDue is what remains to pay
// today: energy + basic charge + late fee − paid.
type Bill struct {
	ID           string     `json:"id"`
	CustomerID   string     `json:"customer_id"`
	Period       Period     `json:"period"`
	IssuedOn     Date       `json:"issued_on"`
	DueDate      Date       `json:"due_date"`
	KWh          int64      `json:"kwh"`
	EnergyCharge money.Fen  `json:"energy_charge"`
	BasicCharge  money.Fen  `json:"basic_charge"`
	LateFee      money.Fen  `json:"late_fee"` // accrued up to today (Shanghai)
	Paid         money.Fen  `json:"paid"`
	AmountDue    money.Fen  `json:"amount_due"`
	Status       BillStatus `json:"status"`
}

// BillFilter narrows Bills. Empty fields match everything.
type BillFilter struct {
	// Status "" or "all" lists every bill; "unpaid" lists open and overdue.
	Status string
	From   Period
	To     Period
}

// Arrears is what a customer owes past due.
type Arrears struct {
	CustomerID    string    `json:"customer_id"`
	Total         money.Fen `json:"total"`     // sum of AmountDue of overdue bills, late fees included
	LateFees      money.Fen `json:"late_fees"` // the late-fee part of Total
	OverdueBills  int       `json:"overdue_bills"`
	OldestDueDate Date      `json:"oldest_due_date,omitempty"`
	Bills         []Bill    `json:"bills"`
}

// Allocation is the part of a payment applied to one bill.
type Allocation struct {
	BillID string    `json:"bill_id"`
	Amount money.Fen `json:"amount"`
}

// PaymentStatus is the state of a payment received.
type PaymentStatus string

const (
	PaymentPosted   PaymentStatus = "posted"
	PaymentReversed PaymentStatus = "reversed"
)

// Payment is a payment received and posted to bills or, for a prepaid
// top-up, to the prepaid account (no allocations, Prepaid true).
type Payment struct {
	Reference    string        `json:"reference"` // the payer's idempotency key: one posting per reference
	CustomerID   string        `json:"customer_id"`
	Amount       money.Fen     `json:"amount"`
	Allocations  []Allocation  `json:"allocations,omitempty"`
	Prepaid      bool          `json:"prepaid,omitempty"`
	Channel      string        `json:"channel"`        // "unionpay", "counter", "bank"...
	ChannelTxnID string        `json:"channel_txn_id"` // e.g. UnionPay queryId
	PaidAt       time.Time     `json:"paid_at"`
	PostedAt     time.Time     `json:"posted_at"`
	Status       PaymentStatus `json:"status"`
	ReversedAt   *time.Time    `json:"reversed_at,omitempty"`
	ReverseNote  string        `json:"reverse_note,omitempty"`
}

// PostPayment asks the platform to record a payment. Posting the same
// Reference again returns the first posting (same content) or ErrConflict
// (different content); it never posts twice.
type PostPayment struct {
	Reference    string       `json:"reference"`
	CustomerID   string       `json:"customer_id"`
	Amount       money.Fen    `json:"amount"`
	Allocations  []Allocation `json:"allocations,omitempty"`
	Prepaid      bool         `json:"prepaid,omitempty"`
	Channel      string       `json:"channel"`
	ChannelTxnID string       `json:"channel_txn_id"`
	PaidAt       time.Time    `json:"paid_at"`
}

// PrepaidAccount is a customer's prepaid balance at the company.
type PrepaidAccount struct {
	CustomerID string    `json:"customer_id"`
	Balance    money.Fen `json:"balance"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// PrepaidEntry is one movement of a prepaid account: a debit (negative
// Amount) or a credit (positive), keyed by the caller's idempotency key.
type PrepaidEntry struct {
	Key          string    `json:"key"`
	CustomerID   string    `json:"customer_id"`
	Amount       money.Fen `json:"amount"`
	BalanceAfter money.Fen `json:"balance_after"`
	Memo         string    `json:"memo"`
	At           time.Time `json:"at"`
}
