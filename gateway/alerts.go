package main

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/platform"
)

// Alert thresholds.
const (
	// dueSoonDays: an unpaid bill falling due within this many days raises
	// an info alert.
	dueSoonDays = 7
	// criticalOverdueDays: beyond this many days overdue, an alert is
	// critical. China's Rules for Power Supply Business (供电营业规则,
	// 1996) let a supplier, after a reminder, stop supplying a user whose
	// charges are more than 30 days overdue, so from then on the customer
	// must be told plainly that supply is at risk.
	criticalOverdueDays = 30
	// criticalLateFeePercent: a bill whose late fee has reached this share
	// of its charges (energy + basic) is critical however few days it is
	// overdue (cross-year arrears accrue fees faster).
	criticalLateFeePercent = 10
)

// alertsFor turns unpaid bills into alerts as of now (Shanghai dates):
// critical first, then warnings, then infos, the oldest due date first
// within each level. Settled bills and bills with nothing due raise none.
func alertsFor(bills []platform.Bill, now time.Time) []api.Alert {
	type ranked struct {
		alert api.Alert
		rank  int
		due   platform.Date
	}
	today, _ := dayNumber(platform.DateOf(now))
	var out []ranked
	for _, b := range bills {
		if b.Status == platform.BillSettled || b.AmountDue <= 0 {
			continue
		}
		due, ok := dayNumber(b.DueDate)
		if !ok {
			continue
		}
		overdue := today - due
		switch {
		case overdue > 0 || b.Status == platform.BillOverdue:
			overdue = max(overdue, 1)
			charges := b.EnergyCharge + b.BasicCharge
			if overdue > criticalOverdueDays || charges > 0 && b.LateFee*100 >= charges*criticalLateFeePercent {
				out = append(out, ranked{rank: 0, due: b.DueDate, alert: api.Alert{
					Level: api.AlertCritical, BillID: b.ID,
					Message: fmt.Sprintf("Bill for %s is %s overdue (due %s): %s to pay, including %s late fees. Supply may be suspended; please pay now.",
						b.Period, days(overdue), b.DueDate, b.AmountDue.Display(), b.LateFee.Display()),
				}})
			} else {
				out = append(out, ranked{rank: 1, due: b.DueDate, alert: api.Alert{
					Level: api.AlertWarning, BillID: b.ID,
					Message: fmt.Sprintf("Bill for %s is %s overdue (due %s): %s to pay, including %s late fees, which grow every day.",
						b.Period, days(overdue), b.DueDate, b.AmountDue.Display(), b.LateFee.Display()),
				}})
			}
		case -overdue <= dueSoonDays:
			when := "today"
			if overdue < 0 {
				when = "in " + days(-overdue)
			}
			out = append(out, ranked{rank: 2, due: b.DueDate, alert: api.Alert{
				Level: api.AlertInfo, BillID: b.ID,
				Message: fmt.Sprintf("Bill for %s of %s is due on %s (%s).", b.Period, b.AmountDue.Display(), b.DueDate, when),
			}})
		}
	}
	slices.SortStableFunc(out, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.due, b.due))
	})
	alerts := make([]api.Alert, len(out))
	for i, r := range out {
		alerts[i] = r.alert
	}
	return alerts
}

func days(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}

// dayNumber counts days since the epoch for a calendar date, so that dates
// subtract without time zones getting in the way.
func dayNumber(d platform.Date) (int, bool) {
	t, err := time.Parse(time.DateOnly, string(d))
	if err != nil {
		return 0, false
	}
	return int(t.Unix() / 86400), true
}
