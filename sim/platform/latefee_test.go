package simplatform

import (
	"testing"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

func TestLateFeeGolden(t *testing.T) {
	for _, tc := range []struct {
		name        string
		residential bool
		charges     money.Fen
		due, today  platform.Date
		paid        []Paid
		want        money.Fen
	}{
		{"not yet due", false, 100_000, "2026-03-25", "2026-03-20", nil, 0},
		{"on the due date", false, 100_000, "2026-03-25", "2026-03-25", nil, 0},
		{"first overdue day: 2‰ of 1000 yuan", false, 100_000, "2026-03-25", "2026-03-26", nil, 200},
		{"ten days", false, 100_000, "2026-03-25", "2026-04-04", nil, 2_000},
		// 12-26..12-31 at 2‰ (6 × 200) + 01-01..01-05 at 3‰ (5 × 300)
		{"across the year end: 3‰ from 1 January", false, 100_000, "2025-12-25", "2026-01-05", nil, 1_200 + 1_500},
		{"the 31st of December is still 2‰", false, 100_000, "2025-12-25", "2025-12-31", nil, 1_200},
		// Nov 26–Dec 31: 36 days × 2,000; Jan 1–Feb 10: 41 days × 3,000
		{"months into the next year", false, 1_000_000, "2025-11-25", "2026-02-10", nil, 36*2_000 + 41*3_000},
		{"residential 1‰, also across the year end", true, 100_000, "2025-12-25", "2026-01-05", nil, 11 * 100},
		// 123,456 × 2‰ = 246.912 → 247 a day
		{"each day rounds half up", false, 123_456, "2026-03-25", "2026-03-28", nil, 3 * 247},
		// 75,250 × 2‰ = 150.5 → 151 a day
		{"an exact half rounds up", false, 75_250, "2026-03-25", "2026-03-26", []Paid{}, 151},
		// 100 yuan × 2‰ = 20 fen a day; two days are 40 fen, charged as 1 yuan
		{"minimum of 1 yuan", false, 10_000, "2026-03-25", "2026-03-27", nil, 100},
		{"nothing owed, no minimum", false, 10_000, "2026-03-25", "2026-03-27", []Paid{{"2026-03-20", 10_000}}, 0},
		// 26, 27, 28 on 1000 yuan (200 each; the payment day accrues on the
		// arrears before the payment), 29, 30, 31 on 400 yuan (80 each)
		{"part payment reduces the arrears from the next day", false, 100_000, "2026-03-25", "2026-03-31",
			[]Paid{{"2026-03-28", 60_000}}, 3*200 + 3*80},
		{"paid in full with the fee: accrual stops", false, 100_000, "2026-03-25", "2026-04-30",
			[]Paid{{"2026-03-28", 100_600}}, 600},
		{"paid on time", false, 100_000, "2026-03-25", "2026-04-30", []Paid{{"2026-03-25", 100_000}}, 0},
		{"payments in any order", false, 100_000, "2026-03-25", "2026-03-31",
			[]Paid{{"2026-03-29", 40_000}, {"2026-03-27", 20_000}}, 2*200 + 2*160 + 2*80},
	} {
		got, err := LateFee(tc.residential, tc.charges, tc.due, tc.paid, tc.today)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: LateFee = %d fen, want %d", tc.name, got, tc.want)
		}
	}
	if _, err := LateFee(false, 1, "2026-02-30", nil, "2026-03-01"); err == nil {
		t.Error("an impossible due date was accepted")
	}
}

func TestBillView(t *testing.T) {
	b := BillRecord{ID: "B1", CustomerID: "C1", Period: "2026-02", IssuedOn: "2026-03-01", DueDate: "2026-03-25",
		KWh: 1000, EnergyCharge: 70_000, BasicCharge: 30_000}
	for _, tc := range []struct {
		name             string
		paid             []paidOn
		today            platform.Date
		fee, due, unpaid money.Fen
		status           platform.BillStatus
	}{
		{"issued", nil, "2026-03-10", 0, 100_000, 0, platform.BillOpen},
		{"due today is still open", nil, "2026-03-25", 0, 100_000, 0, platform.BillOpen},
		{"overdue", nil, "2026-03-31", 1_200, 101_200, 1_200, platform.BillOverdue},
		{"part paid", []paidOn{{mustDay("2026-03-28"), 60_000}}, "2026-03-31", 840, 40_840, 840, platform.BillOverdue},
		// Charges paid, 300 of the 600 fee not: 300 due, all of it fee.
		{"fee partly unpaid", []paidOn{{mustDay("2026-03-28"), 100_300}}, "2026-04-30", 600, 300, 300, platform.BillOverdue},
		{"settled late", []paidOn{{mustDay("2026-03-28"), 100_600}}, "2026-04-30", 600, 0, 0, platform.BillSettled},
		{"settled on time", []paidOn{{mustDay("2026-03-20"), 100_000}}, "2026-04-30", 0, 0, 0, platform.BillSettled},
	} {
		v := b.view(tc.paid, mustDay(tc.today))
		if v.LateFee != tc.fee || v.AmountDue != tc.due || v.UnpaidFee != tc.unpaid || v.Status != tc.status {
			t.Errorf("%s: fee %d due %d unpaid fee %d %s; want %d %d %d %s", tc.name,
				v.LateFee, v.AmountDue, v.UnpaidFee, v.Status, tc.fee, tc.due, tc.unpaid, tc.status)
		}
		var paid money.Fen
		for _, p := range tc.paid {
			paid += p.amount
		}
		if v.Paid != paid || v.AmountDue != max(0, v.EnergyCharge+v.BasicCharge+v.LateFee-v.Paid) {
			t.Errorf("%s: amount due %d is not energy + basic + fee − paid", tc.name, v.AmountDue)
		}
	}
}

func TestArrearsOf(t *testing.T) {
	b := func(id string, due platform.Date) BillRecord {
		return BillRecord{ID: id, CustomerID: "C1", DueDate: due, IssuedOn: "2025-01-01", EnergyCharge: 100_000}
	}
	today := mustDay("2026-01-05")
	vs := []billView{
		b("B1", "2025-12-25").view(nil, today),                                        // overdue: 102,700 with a 2,700 fee
		b("B2", "2025-11-25").view([]paidOn{{mustDay("2025-11-20"), 100_000}}, today), // settled on time
		b("B3", "2026-01-25").view(nil, today),                                        // open, not arrears
		// Oct 26–Dec 31 at 2‰: 67 × 200 = 13,400 fee; 105,000 paid on Dec 31
		// leaves 8,400 due, all of it fee.
		b("B4", "2025-10-25").view([]paidOn{{mustDay("2025-12-31"), 105_000}}, today),
	}
	a := arrearsOf("C1", vs)
	if a.OverdueBills != 2 || a.Total != 102_700+8_400 || a.LateFees != 2_700+8_400 || a.OldestDueDate != "2025-10-25" || len(a.Bills) != 2 {
		t.Errorf("arrears %+v", a)
	}
	if a := arrearsOf("C1", vs[1:3]); a.OverdueBills != 0 || a.Total != 0 || a.Bills == nil {
		t.Errorf("no arrears: %+v (bills must be an empty list, not null)", a)
	}
}
