package main

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

func TestAlertLevels(t *testing.T) {
	// 21 November 2026 in Shanghai, though it is still the 20th in UTC.
	now := time.Date(2026, 11, 20, 17, 0, 0, 0, time.UTC)
	bill := func(id string, due platform.Date, status platform.BillStatus, lateFee int64) platform.Bill {
		return platform.Bill{ID: id, Period: "2026-10", DueDate: due, EnergyCharge: 9_000_00, BasicCharge: 1_000_00,
			LateFee: money.Fen(lateFee), AmountDue: money.Fen(10_000_00 + lateFee), Status: status}
	}
	for _, tc := range []struct {
		name  string
		b     platform.Bill
		level api.AlertLevel // "" for no alert
		words string
	}{
		{"settled", bill("s", "2026-10-01", platform.BillSettled, 0), "", ""},
		{"nothing due", platform.Bill{ID: "z", DueDate: "2026-10-01", Status: platform.BillOverdue}, "", ""},
		{"due in 30 days", bill("f", "2026-12-21", platform.BillOpen, 0), "", ""},
		{"due in 7 days", bill("i7", "2026-11-28", platform.BillOpen, 0), api.AlertInfo, "in 7 days"},
		{"due tomorrow", bill("i1", "2026-11-22", platform.BillOpen, 0), api.AlertInfo, "in 1 day"},
		{"due today", bill("i0", "2026-11-21", platform.BillOpen, 0), api.AlertInfo, "(today)"},
		{"1 day overdue", bill("w1", "2026-11-20", platform.BillOverdue, 20_00), api.AlertWarning, "1 day overdue"},
		{"overdue by the platform's word", bill("w0", "2026-11-21", platform.BillOverdue, 0), api.AlertWarning, "overdue"},
		{"30 days overdue", bill("w30", "2026-10-22", platform.BillOverdue, 600_00), api.AlertWarning, "30 days overdue"},
		{"31 days overdue", bill("c31", "2026-10-21", platform.BillOverdue, 620_00), api.AlertCritical, "Supply may be suspended"},
		{"late fee at 10%", bill("cfee", "2026-11-11", platform.BillOverdue, 1_000_00), api.AlertCritical, "¥1,000.00 late fees"},
		{"late fee under 10%", bill("wfee", "2026-11-11", platform.BillOverdue, 999_99), api.AlertWarning, "¥10,999.99 to pay"},
	} {
		got := alertsFor([]platform.Bill{tc.b}, now)
		if tc.level == "" {
			if len(got) != 0 {
				t.Errorf("%s: %+v", tc.name, got)
			}
			continue
		}
		if len(got) != 1 || got[0].Level != tc.level || got[0].BillID != tc.b.ID || !strings.Contains(got[0].Message, tc.words) {
			t.Errorf("%s: %+v, want %s saying %q", tc.name, got, tc.level, tc.words)
		}
	}
}

func TestAlertOrder(t *testing.T) {
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, platform.Shanghai)
	bills := []platform.Bill{
		{ID: "info", DueDate: "2026-11-23", AmountDue: 1, Status: platform.BillOpen},
		{ID: "warn-new", DueDate: "2026-11-19", AmountDue: 1, Status: platform.BillOverdue},
		{ID: "crit", DueDate: "2026-09-01", AmountDue: 1, Status: platform.BillOverdue},
		{ID: "warn-old", DueDate: "2026-11-01", AmountDue: 1, Status: platform.BillOverdue},
	}
	var ids []string
	for _, a := range alertsFor(bills, now) {
		ids = append(ids, a.BillID)
	}
	if strings.Join(ids, " ") != "crit warn-old warn-new info" {
		t.Errorf("order %v", ids)
	}
}

func TestConsumptionRangeDefaults(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, platform.Shanghai)
	for q, want := range map[string]string{
		"":                        "2025-02..2026-01",
		"to=2026-06":              "2025-07..2026-06",
		"from=2025-11":            "2025-11..2026-01",
		"from=2023-02&to=2026-01": "2023-02..2026-01", // 36 months
		"from=2026-01&to=2026-01": "2026-01..2026-01",
	} {
		v, _ := url.ParseQuery(q)
		from, to, err := consumptionRange(v, now)
		if err != nil || string(from)+".."+string(to) != want {
			t.Errorf("%q: %s..%s %v, want %s", q, from, to, err, want)
		}
	}
	for _, q := range []string{"from=2023-01&to=2026-01", "from=2026-02", "from=2026-02&to=2026-01"} {
		v, _ := url.ParseQuery(q)
		if _, _, err := consumptionRange(v, now); err == nil {
			t.Errorf("%q accepted", q)
		}
	}
}

func TestMonthArithmetic(t *testing.T) {
	for _, tc := range []struct {
		p    platform.Period
		n    int
		want platform.Period
	}{{"2026-01", -1, "2025-12"}, {"2026-12", 1, "2027-01"}, {"2026-05", -11, "2025-06"}, {"2026-05", 0, "2026-05"}, {"0000-03", -11, "0000-01"}} {
		if got := addMonths(tc.p, tc.n); got != tc.want {
			t.Errorf("addMonths(%s, %d) = %s, want %s", tc.p, tc.n, got, tc.want)
		}
	}
	if n := monthsBetween("2025-11", "2026-02"); n != 4 {
		t.Errorf("monthsBetween = %d", n)
	}
}
