package simplatform

import (
	"fmt"
	"slices"
	"time"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

// Late fees (电费违约金) follow Article 98 of the Power Supply Business
// Rules (供电营业规则, Ministry of Electric Power, 1996):
//
//	用户在供电企业规定的期限内未交清电费时，应承担电费滞纳的违约责任。
//	电费违约金从逾期之日起计算至交纳日止。每日电费违约金按下列规定计算：
//	1. 居民用户每日按欠费总额的千分之一计算；
//	2. 其他用户：(1) 当年欠费部分，每日按欠费总额的千分之二计算；
//	   (2) 跨年度欠费部分，每日按欠费总额的千分之三计算。
//	电费违约金收取总额按日累加计收，总额不足1元者按1元收取。
//
// That is: residential customers pay 1‰ of the arrears per day; others 2‰
// per day on arrears of the current year and 3‰ per day on arrears carried
// over from a previous year; the fee accrues daily from the first overdue
// day up to and including the day of payment; a total below 1 yuan is
// charged as 1 yuan. (The Rules have since been revised by NDRC; the
// simulator follows the 1996 text. Check the current text before reusing
// these rates outside the simulator.)
//
// How the simulator reads the open points of the text:
//
//   - Overdue days: the day after the due date is the first overdue day;
//     "today" counts, and so does the day a payment is posted, on the
//     arrears before that payment. A bill due on the 25th and looked at on
//     the 26th has accrued one day.
//   - Current year or carried over: arrears become arrears on the due date,
//     so a day's arrears are "current-year" while that day falls in the due
//     date's calendar year and "carried over" from 1 January of the next
//     year on. A bill due 2025-12-25 accrues at 2‰ from 12-26 to 12-31 and
//     at 3‰ from 2026-01-01.
//   - The arrears a day's fee is computed on is the bill's unpaid charges
//     (energy + basic) at the start of that day: payments reduce the
//     charges first, then the accrued fee. Fees do not earn fees.
//   - Rounding: each day's fee is rounded half up to whole fen, per bill;
//     the bill's late fee is the sum of its daily fees, then raised to
//     100 fen if it is positive and below.
//
// All arithmetic is integer fen.

// Per-mille daily rates of Article 98.
const (
	rateResidential       = 1 // 居民用户
	rateCurrentYear       = 2 // 其他用户, 当年欠费
	rateCarriedOver       = 3 // 其他用户, 跨年度欠费
	minimumLateFee        = money.Fen(100)
	perMille        int64 = 1000
)

// day is a calendar date as a count of days since 1970-01-01, so date
// arithmetic is integer arithmetic.
type day int64

func dayFromTime(t time.Time) day {
	y, m, d := t.Date()
	return day(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

func parseDay(d platform.Date) (day, error) {
	t, err := time.Parse(time.DateOnly, string(d))
	if err != nil {
		return 0, fmt.Errorf("date %q is not a date like 2026-11-21", d)
	}
	return dayFromTime(t), nil
}

func mustDay(d platform.Date) day {
	n, err := parseDay(d)
	if err != nil {
		panic(err)
	}
	return n
}

func (n day) time() time.Time     { return time.Unix(int64(n)*86400, 0).UTC() }
func (n day) date() platform.Date { return platform.Date(n.time().Format(time.DateOnly)) }
func (n day) year() int           { return n.time().Year() }
func (n day) String() string      { return string(n.date()) }

// todayIn is the Shanghai calendar day of an instant.
func todayIn(t time.Time) day { return dayFromTime(t.In(platform.Shanghai)) }

// Paid is an amount paid towards a bill, posted on a business date.
type Paid struct {
	On     platform.Date
	Amount money.Fen
}

// paidOn is Paid with the date as a day.
type paidOn struct {
	on     day
	amount money.Fen
}

// LateFee is the late fee a bill with the given charges (energy + basic)
// and due date has accrued up to and including today, given what was paid
// towards it and when (see the rules above).
func LateFee(residential bool, charges money.Fen, due platform.Date, paid []Paid, today platform.Date) (money.Fen, error) {
	d, err := parseDay(due)
	if err != nil {
		return 0, err
	}
	t, err := parseDay(today)
	if err != nil {
		return 0, err
	}
	ps := make([]paidOn, 0, len(paid))
	for _, p := range paid {
		on, err := parseDay(p.On)
		if err != nil {
			return 0, err
		}
		ps = append(ps, paidOn{on, p.Amount})
	}
	return lateFee(residential, charges, d, ps, t), nil
}

// dailyRate is the per-mille rate of Article 98 for a day of arrears of a
// bill due on due.
func dailyRate(residential bool, due, d day) int64 {
	switch {
	case residential:
		return rateResidential
	case d.year() == due.year():
		return rateCurrentYear
	default:
		return rateCarriedOver
	}
}

func lateFee(residential bool, charges money.Fen, due day, paid []paidOn, today day) money.Fen {
	if today <= due || charges <= 0 {
		return 0
	}
	paid = slices.Clone(paid)
	slices.SortFunc(paid, func(a, b paidOn) int { return int(a.on - b.on) })

	var total money.Fen
	outstanding := charges
	next := 0 // first payment not yet applied
	for d := due + 1; d <= today; d++ {
		// Payments posted before day d reduce the arrears that day; one
		// posted on d itself counts from the next day (交纳日 accrues).
		for next < len(paid) && paid[next].on < d {
			outstanding -= paid[next].amount
			next++
		}
		if outstanding <= 0 {
			break
		}
		total += money.Fen(divRoundHalfUp(int64(outstanding)*dailyRate(residential, due, d), perMille))
	}
	if total > 0 && total < minimumLateFee {
		total = minimumLateFee
	}
	return total
}
