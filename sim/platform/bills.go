package simplatform

import (
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

// billView is a bill as it stands on a day.
type billView struct {
	platform.Bill
	// UnpaidFee is the part of AmountDue that is late fee: payments settle
	// the charges first.
	UnpaidFee money.Fen
	// DueDay is DueDate as a day.
	DueDay day
}

// view computes what a bill looks like today: the late fee accrued on the
// unpaid charges, what was paid, what remains and the status. paid are the
// bill's allocations of posted (not reversed) payments.
func (b BillRecord) view(paid []paidOn, today day) billView {
	due := mustDay(b.DueDate)
	charges := b.EnergyCharge + b.BasicCharge
	// The simulator's customers are all non-residential (large industry,
	// general commercial, agricultural), so Article 98's 2‰/3‰ rates apply.
	fee := lateFee(false, charges, due, paid, today)
	var total money.Fen
	for _, p := range paid {
		total += p.amount
	}
	amountDue := max(charges+fee-total, 0)
	unpaidFee := min(max(fee-max(total-charges, 0), 0), amountDue)
	status := platform.BillOpen
	switch {
	case amountDue == 0:
		status = platform.BillSettled
	case today > due:
		status = platform.BillOverdue
	}
	return billView{
		Bill: platform.Bill{
			ID:           b.ID,
			CustomerID:   b.CustomerID,
			Period:       b.Period,
			IssuedOn:     b.IssuedOn,
			DueDate:      b.DueDate,
			KWh:          b.KWh,
			EnergyCharge: b.EnergyCharge,
			BasicCharge:  b.BasicCharge,
			LateFee:      fee,
			Paid:         total,
			AmountDue:    amountDue,
			Status:       status,
		},
		UnpaidFee: unpaidFee,
		DueDay:    due,
	}
}
