package simplatform

import (
	"fmt"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

// Price is an energy price in units of 0.0001 yuan (1/100 fen) per kWh,
// the precision Chinese tariffs are published with ("0.6500 元/千瓦时" is
// Price(6500)). Bills are integer fen; see EnergyCharge for the rounding.
type Price int64

func (p Price) String() string { return fmt.Sprintf("%d.%04d yuan/kWh", p/10000, p%10000) }

// Tariff is the price schedule a bill is computed with.
//
// The numbers are the simulator's, of the order of published practice,
// not any province's official catalogue:
//
//   - Time-of-use ratios peak : flat : valley = 1.7 : 1 : 0.38. NDRC's
//     notice on improving time-of-use pricing (发改价格〔2021〕1093号,
//     July 2021) asks provinces for a peak-to-valley ratio of at least 4:1
//     where the system's peak-valley load gap exceeds 40% (3:1 elsewhere);
//     1.7/0.38 ≈ 4.5, within the range of the provincial schedules that
//     followed it.
//   - Flat energy prices around 0.65 yuan/kWh for large industry at 10 kV,
//     a little lower at higher voltage (the transmission and distribution
//     part of the price falls with voltage), and a little higher for general
//     commercial customers: 10 kV 0.6500, 35 kV 0.6300, 110 kV and above
//     0.6050; general commercial 0.6800; agricultural 0.5000 without
//     time-of-use differentiation.
//   - Two-part tariff (大工业用电, large industry): a basic charge on the
//     contract (transformer) capacity of 30 yuan per kVA per month, of the
//     order of the provincial "by capacity" basic electricity prices (基本电价,
//     按容量计收), which are a few tens of yuan per kVA·month. Single-part
//     tariffs (general commercial, agricultural) have no basic charge.
//
// Real bills also carry government funds and surcharges and a power factor
// adjustment (力调电费); the simulator leaves them out.
type Tariff struct {
	Name string
	// BasicPerKVAMonth is the basic charge per kVA of contract capacity per
	// month; zero for single-part tariffs.
	BasicPerKVAMonth   money.Fen
	Peak, Flat, Valley Price
}

// Time-of-use ratios in percent of the flat price (see Tariff).
const (
	peakPercent   = 170
	valleyPercent = 38
)

// basicPerKVAMonth is the two-part tariff's basic (capacity) price: 30 yuan.
const basicPerKVAMonth = money.Fen(3000)

// touTariff derives the peak and valley prices from the flat one. The
// results are exact for the prices used here (multiples of 50 units);
// anything else rounds half up.
func touTariff(name string, basic money.Fen, flat Price) Tariff {
	return Tariff{
		Name:             name,
		BasicPerKVAMonth: basic,
		Peak:             Price(divRoundHalfUp(int64(flat)*peakPercent, 100)),
		Flat:             flat,
		Valley:           Price(divRoundHalfUp(int64(flat)*valleyPercent, 100)),
	}
}

// TariffFor returns the tariff of a customer type at a voltage grade.
func TariffFor(t platform.CustomerType, voltage string) (Tariff, error) {
	switch t {
	case platform.LargeIndustry:
		switch voltage {
		case "10kV":
			return touTariff("large industry 10kV", basicPerKVAMonth, 6500), nil
		case "35kV":
			return touTariff("large industry 35kV", basicPerKVAMonth, 6300), nil
		case "110kV", "220kV":
			return touTariff("large industry 110kV+", basicPerKVAMonth, 6050), nil
		}
	case platform.GeneralCommercial:
		switch voltage {
		case "0.4kV", "10kV", "35kV":
			return touTariff("general commercial", 0, 6800), nil
		}
	case platform.Agricultural:
		return Tariff{Name: "agricultural", Peak: 5000, Flat: 5000, Valley: 5000}, nil
	}
	return Tariff{}, fmt.Errorf("no tariff for %s customers at %q", t, voltage)
}

// EnergyCharge prices a month's time-of-use energy. The exact amount, in
// 1/100 fen, is rounded half up to whole fen once, on the total: per-period
// rounding would make the bill depend on how the month is split.
func (t Tariff) EnergyCharge(peakKWh, flatKWh, valleyKWh int64) money.Fen {
	units := peakKWh*int64(t.Peak) + flatKWh*int64(t.Flat) + valleyKWh*int64(t.Valley)
	return money.Fen(divRoundHalfUp(units, 100))
}

// BasicCharge is a month's basic charge on the contract capacity.
func (t Tariff) BasicCharge(capacityKVA int64) money.Fen {
	return t.BasicPerKVAMonth * money.Fen(capacityKVA)
}

// divRoundHalfUp divides a non-negative x by d > 0, rounding halves up.
func divRoundHalfUp(x, d int64) int64 {
	if x < 0 {
		panic("divRoundHalfUp: negative amount")
	}
	return (x + d/2) / d
}
