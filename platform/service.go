package platform

import (
	"context"

	"github.com/gridpay/gridpay/money"
)

// Service is the platform web service as GridPay uses it. *Client
// implements it over HTTPS; tests use fakes.
type Service interface {
	Customer(ctx context.Context, customerID string) (Customer, error)
	MeteringPoints(ctx context.Context, customerID string) ([]MeteringPoint, error)
	// Consumption lists the months from..to inclusive, every metering point.
	Consumption(ctx context.Context, customerID string, from, to Period) ([]Consumption, error)
	Bills(ctx context.Context, customerID string, f BillFilter) ([]Bill, error)
	// Bill returns one bill of that customer; another customer's bill is
	// ErrBillNotFound, exactly as a bill that does not exist.
	Bill(ctx context.Context, customerID, billID string) (Bill, error)
	Arrears(ctx context.Context, customerID string) (Arrears, error)
	// Payments lists payments received, newest first, paid within from..to
	// (Shanghai dates, inclusive; empty means unbounded).
	Payments(ctx context.Context, customerID string, from, to Date) ([]Payment, error)
	Payment(ctx context.Context, reference string) (Payment, error)
	PostPayment(ctx context.Context, p PostPayment) (Payment, error)
	// ReversePayment undoes a posting (idempotent by reference).
	ReversePayment(ctx context.Context, reference, note string) (Payment, error)

	PrepaidAccount(ctx context.Context, customerID string) (PrepaidAccount, error)
	// DebitPrepaid and CreditPrepaid move money on the prepaid account,
	// idempotently by key: the same key returns the first entry.
	DebitPrepaid(ctx context.Context, customerID, key string, amount money.Fen, memo string) (PrepaidEntry, error)
	CreditPrepaid(ctx context.Context, customerID, key string, amount money.Fen, memo string) (PrepaidEntry, error)
	PrepaidEntry(ctx context.Context, key string) (PrepaidEntry, error)
}
