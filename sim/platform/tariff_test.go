package simplatform

import (
	"testing"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

func TestTariffPrices(t *testing.T) {
	for _, tc := range []struct {
		typ                platform.CustomerType
		voltage            string
		basic              money.Fen
		peak, flat, valley Price
	}{
		{platform.LargeIndustry, "10kV", 3000, 11050, 6500, 2470},
		{platform.LargeIndustry, "35kV", 3000, 10710, 6300, 2394},
		{platform.LargeIndustry, "110kV", 3000, 10285, 6050, 2299},
		{platform.GeneralCommercial, "10kV", 0, 11560, 6800, 2584},
		{platform.Agricultural, "10kV", 0, 5000, 5000, 5000},
	} {
		tr, err := TariffFor(tc.typ, tc.voltage)
		if err != nil {
			t.Fatalf("TariffFor(%s, %s): %v", tc.typ, tc.voltage, err)
		}
		if tr.BasicPerKVAMonth != tc.basic || tr.Peak != tc.peak || tr.Flat != tc.flat || tr.Valley != tc.valley {
			t.Errorf("%s %s: basic %d peak %d flat %d valley %d; want %d %d %d %d", tc.typ, tc.voltage,
				tr.BasicPerKVAMonth, tr.Peak, tr.Flat, tr.Valley, tc.basic, tc.peak, tc.flat, tc.valley)
		}
		if tr.Peak != tr.Valley {
			// NDRC 2021: peak-to-valley ratio at least 4:1 (3:1 where the
			// load gap is small); the simulator uses about 4.5.
			if tr.Peak < 4*tr.Valley {
				t.Errorf("%s: peak %v is less than 4× valley %v", tr.Name, tr.Peak, tr.Valley)
			}
		}
	}
	if _, err := TariffFor(platform.LargeIndustry, "380V"); err == nil {
		t.Error("a large industry tariff at 380V was accepted")
	}
	if _, err := TariffFor("residential", "0.4kV"); err == nil {
		t.Error("an unknown customer type was accepted")
	}
}

func TestEnergyChargeGolden(t *testing.T) {
	li10, _ := TariffFor(platform.LargeIndustry, "10kV")
	gc, _ := TariffFor(platform.GeneralCommercial, "10kV")
	for _, tc := range []struct {
		name               string
		tr                 Tariff
		peak, flat, valley int64
		want               money.Fen
	}{
		// 100 MWh × 1.1050 + 150 MWh × 0.6500 + 80 MWh × 0.2470 = 227,760.00 yuan
		{"large industry month", li10, 100_000, 150_000, 80_000, 22_776_000},
		{"one peak kWh: 110.5 fen rounds up", li10, 1, 0, 0, 111},
		{"one valley kWh: 24.7 fen", li10, 0, 0, 1, 25},
		// Rounded once on the total (135.2 → 135), not per period (111 + 25).
		{"rounded on the total", li10, 1, 0, 1, 135},
		{"nothing", li10, 0, 0, 0, 0},
		// 20 MWh × 1.1560 + 50 MWh × 0.6800 + 30 MWh × 0.2584 = 64,872.00 yuan
		{"general commercial month", gc, 20_000, 50_000, 30_000, 6_487_200},
	} {
		if got := tc.tr.EnergyCharge(tc.peak, tc.flat, tc.valley); got != tc.want {
			t.Errorf("%s: EnergyCharge = %d fen, want %d", tc.name, got, tc.want)
		}
	}
	if got := li10.BasicCharge(1000); got != 3_000_000 {
		t.Errorf("basic charge of 1000 kVA = %d fen, want 3,000,000 (30 yuan/kVA·month)", got)
	}
	if got := gc.BasicCharge(1000); got != 0 {
		t.Errorf("single-part tariff basic charge = %d, want 0", got)
	}
}

func TestDivRoundHalfUp(t *testing.T) {
	for _, tc := range []struct{ x, d, want int64 }{
		{0, 100, 0}, {49, 100, 0}, {50, 100, 1}, {149, 100, 1}, {150, 100, 2}, {499, 1000, 0}, {500, 1000, 1},
	} {
		if got := divRoundHalfUp(tc.x, tc.d); got != tc.want {
			t.Errorf("divRoundHalfUp(%d, %d) = %d, want %d", tc.x, tc.d, got, tc.want)
		}
	}
}
