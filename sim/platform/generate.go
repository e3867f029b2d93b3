package simplatform

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

// SeedOptions describe the data the generator makes. The same options
// always make the same data, on any machine and Go version.
type SeedOptions struct {
	Customers int    // number of customers, 1..100000
	Months    int    // billing months up to the month before today's, 1..120
	Seed      uint64 // any value; different seeds make different data
	// Today is the business date the data is made for: the last billed
	// month is the one before it, payments never come after it. Empty
	// means the simulator's today.
	Today platform.Date
}

// Limits of SeedOptions.
const (
	MaxSeedCustomers = 100_000
	MaxSeedMonths    = 120
)

// Validate checks the options, Today included.
func (o SeedOptions) Validate() error {
	var errs []error
	if o.Customers < 1 || o.Customers > MaxSeedCustomers {
		errs = append(errs, fmt.Errorf("customers must be 1..%d, not %d", MaxSeedCustomers, o.Customers))
	}
	if o.Months < 1 || o.Months > MaxSeedMonths {
		errs = append(errs, fmt.Errorf("months must be 1..%d, not %d", MaxSeedMonths, o.Months))
	}
	if _, err := parseDay(o.Today); err != nil {
		errs = append(errs, fmt.Errorf("today: %w", err))
	}
	return errors.Join(errs...)
}

// BillRecord is a bill as issued. What was paid, the late fee, the amount
// due and the status follow from its payments and the day it is looked at.
type BillRecord struct {
	ID           string          `json:"id"`
	CustomerID   string          `json:"customer_id"`
	Period       platform.Period `json:"period"`
	IssuedOn     platform.Date   `json:"issued_on"`
	DueDate      platform.Date   `json:"due_date"`
	KWh          int64           `json:"kwh"`
	EnergyCharge money.Fen       `json:"energy_charge"`
	BasicCharge  money.Fen       `json:"basic_charge"`
}

// PaymentRecord is a payment as stored: the posting and the business day
// it took effect.
type PaymentRecord struct {
	platform.Payment
	PostedOn platform.Date `json:"posted_on"`
}

// EntryRecord is a prepaid entry as stored. Entries of top-ups by payment
// have no key and name their payment instead.
type EntryRecord struct {
	platform.PrepaidEntry
	PaymentReference string `json:"payment_reference,omitempty"`
}

// Dataset is everything the generator makes, in the order it is made.
type Dataset struct {
	Options         SeedOptions               `json:"options"`
	Customers       []platform.Customer       `json:"customers"`
	MeteringPoints  []platform.MeteringPoint  `json:"metering_points"`
	Consumption     []platform.Consumption    `json:"consumption"`
	Bills           []BillRecord              `json:"bills"`
	Payments        []PaymentRecord           `json:"payments"`
	PrepaidAccounts []platform.PrepaidAccount `json:"prepaid_accounts"`
	PrepaidEntries  []EntryRecord             `json:"prepaid_entries"`
}

// Hash is the SHA-256 of the dataset's JSON form: equal hashes, equal data.
func (d *Dataset) Hash() string {
	b, err := json.Marshal(d)
	if err != nil {
		panic(err) // only plain values; cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// behaviour is how a customer pays.
type behaviour int

const (
	payOnTime    behaviour = iota // every bill before its due date
	payLate                       // every bill, 3–40 days late, late fee included
	shortArrears                  // the last 1–3 overdue bills unpaid, sometimes one part-paid
	longArrears                   // the last 5–14 overdue bills unpaid, across a year end
)

// behaviourBlock is the mix of behaviours in every block of 20 customers
// (shuffled per block), so that even a small seed has customers in
// arrears, late payers and customers with open bills: 14 pay on time, 2
// pay late, 3 owe a few months, 1 owes many.
var behaviourBlock = [20]behaviour{
	payOnTime, payOnTime, payOnTime, payOnTime, payOnTime, payOnTime, payOnTime,
	payOnTime, payOnTime, payOnTime, payOnTime, payOnTime, payOnTime, payOnTime,
	payLate, payLate, shortArrears, shortArrears, shortArrears, longArrears,
}

// Billing calendar: a month's bill is issued on the 1st of the next month
// and due on the 25th of that month (issue date + 24 days), as a monthly
// settlement cycle of large customers commonly runs.
const (
	issueDayOfMonth = 1
	daysToPay       = 24
)

// Streams of the generator's random numbers, so that one part of the data
// does not shift when another changes (a customer's profile does not
// depend on --months; a month's consumption does not depend on today).
const (
	streamCustomer = iota + 1
	streamMonth
	streamPayment
	streamBlock
	streamPrepaid
)

// firstCustomerNumber makes customer IDs "C31000001", "C31000002", ...
const firstCustomerNumber = 31_000_001

// Generate makes the dataset of opts. It is a pure function of opts.
func Generate(opts SeedOptions) (*Dataset, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("simplatform.Generate: %w", err)
	}
	today := mustDay(opts.Today)
	g := &generator{opts: opts, today: today, ds: &Dataset{Options: opts}}
	first := today.time()
	first = time.Date(first.Year(), first.Month(), 1, 0, 0, 0, 0, time.UTC)
	for k := opts.Months; k >= 1; k-- {
		g.months = append(g.months, first.AddDate(0, -k, 0))
	}
	// The seed epoch: when the oldest month began, in Shanghai. Records
	// that need a timestamp without a natural one use it, never the clock.
	g.epoch = time.Date(g.months[0].Year(), g.months[0].Month(), 1, 0, 0, 0, 0, platform.Shanghai).UTC()
	for i := range opts.Customers {
		if err := g.customer(i); err != nil {
			return nil, fmt.Errorf("simplatform.Generate: customer %d: %w", i, err)
		}
	}
	return g.ds, nil
}

type generator struct {
	opts   SeedOptions
	today  day
	months []time.Time // first day of each billed month, oldest first (UTC dates)
	epoch  time.Time
	ds     *Dataset
	names  map[string]bool
}

func (g *generator) customer(i int) error {
	r := newRNG(g.opts.Seed, streamCustomer, uint64(i))
	number := firstCustomerNumber + i
	id := fmt.Sprintf("C%08d", number)

	c := platform.Customer{ID: id, AccountNumber: fmt.Sprintf("9100%08d%02d", number, r.intn(100))}
	if r.intn(100) < 80 {
		c.Type = platform.LargeIndustry
		switch v := r.intn(100); {
		case v < 60:
			c.VoltageGrade = "10kV"
			c.ContractCapacityKVA = pick(r, []int64{315, 400, 500, 630, 800, 1000, 1250, 1600, 2000, 2500, 3150, 4000, 5000, 6300})
		case v < 90:
			c.VoltageGrade = "35kV"
			c.ContractCapacityKVA = pick(r, []int64{5000, 6300, 8000, 10000, 12500, 16000, 20000})
		default:
			c.VoltageGrade = "110kV"
			c.ContractCapacityKVA = pick(r, []int64{31500, 40000, 50000, 63000})
		}
	} else {
		c.Type = platform.GeneralCommercial
		c.VoltageGrade = "10kV"
		// Single-part tariff: the capacity is not billed (see types.go).
	}
	city := pick(r, cities)
	c.Name = g.companyName(r, city.Name, c.Type)
	c.ContactName = pick(r, surnames) + pick(r, givenNameChars)
	if r.intn(2) == 0 {
		c.ContactName += pick(r, givenNameChars)
	}
	c.ContactPhone = fmt.Sprintf("1%s%09d", pick(r, []string{"3", "5", "8", "9"}), r.intn(1_000_000_000))
	c.Address = fmt.Sprintf("%s市%s%s%d号", city.Name, pick(r, city.Districts), pick(r, roads), 1+r.intn(999))
	g.ds.Customers = append(g.ds.Customers, c)

	tariff, err := TariffFor(c.Type, c.VoltageGrade)
	if err != nil {
		return err
	}

	// Metering points, with the share of the load each carries.
	nPoints := 1 + r.intn(3)
	var points []platform.MeteringPoint
	var weights []int64
	var weightSum int64
	for j := range nPoints {
		mp := platform.MeteringPoint{
			ID:          fmt.Sprintf("M%08d-%d", number, j+1),
			CustomerID:  id,
			MeterNumber: fmt.Sprintf("33%08d%02d%04d", number, j+1, r.intn(10000)),
			Location:    meterLocations[j],
			Multiplier:  multiplier(r, c.VoltageGrade),
		}
		points = append(points, mp)
		w := int64(1 + r.intn(4))
		weights = append(weights, w)
		weightSum += w
	}
	g.ds.MeteringPoints = append(g.ds.MeteringPoints, points...)

	// Typical monthly energy: capacity × power factor 0.85 × load rate ×
	// 720 h for large industry; a flat range for commercial customers.
	var baseKWh int64
	if c.Type == platform.LargeIndustry {
		loadPercent := int64(25 + r.intn(41)) // 25–65 %
		baseKWh = c.ContractCapacityKVA * 85 * loadPercent * 720 / 10000
	} else {
		baseKWh = int64(20_000 + r.intn(281)*1000) // 20–300 MWh
	}
	peakShare := int64(28 + r.intn(13))   // 28–40 %
	valleyShare := int64(22 + r.intn(14)) // 22–35 %

	// Payment behaviour: from the customer's block of 20.
	block := i / 20
	perm := newRNG(g.opts.Seed, streamBlock, uint64(block)).perm(20)
	beh := behaviourBlock[perm[i%20]]
	earlyPayer := r.intn(100) < 40

	var bills []BillRecord
	for _, m := range g.months {
		mr := newRNG(g.opts.Seed, streamMonth, uint64(i), uint64(m.Year()*100+int(m.Month())))
		period := platform.Period(m.Format("2006-01"))
		factor := seasonal[m.Month()-1] * int64(92+mr.intn(17)) // percent × percent
		var peak, flat, valley int64
		for j, mp := range points {
			kwh := baseKWh * weights[j] / weightSum * factor / 10000
			kwh = kwh * int64(95+mr.intn(11)) / 100 // each meter varies a little on its own
			p := kwh * (peakShare + int64(mr.intn(5)) - 2) / 100
			v := kwh * (valleyShare + int64(mr.intn(5)) - 2) / 100
			cons := platform.Consumption{
				Period: period, MeteringPointID: mp.ID,
				PeakKWh: p, FlatKWh: kwh - p - v, ValleyKWh: v, TotalKWh: kwh,
			}
			g.ds.Consumption = append(g.ds.Consumption, cons)
			peak, flat, valley = peak+cons.PeakKWh, flat+cons.FlatKWh, valley+cons.ValleyKWh
		}
		issued := dayFromTime(m.AddDate(0, 1, issueDayOfMonth-1))
		b := BillRecord{
			ID:           fmt.Sprintf("B%s%08d", m.Format("200601"), number),
			CustomerID:   id,
			Period:       period,
			IssuedOn:     issued.date(),
			DueDate:      (issued + daysToPay).date(),
			KWh:          peak + flat + valley,
			EnergyCharge: tariff.EnergyCharge(peak, flat, valley),
			BasicCharge:  tariff.BasicCharge(c.ContractCapacityKVA),
		}
		bills = append(bills, b)
	}
	g.ds.Bills = append(g.ds.Bills, bills...)

	g.payBills(r, i, beh, earlyPayer, bills)
	g.prepaid(i, c)
	return nil
}

// seasonal is the load of each calendar month in percent of the year's
// average: summer cooling and winter heating peaks, the Spring Festival
// trough in February.
var seasonal = [12]int64{105, 85, 98, 97, 100, 105, 115, 118, 105, 98, 100, 108}

// multiplier is a plausible CT × PT ratio at a voltage: PT 10 kV/100 V =
// 100, 35 kV/100 V = 350, 110 kV/100 V = 1100, times a CT ratio /5 A.
func multiplier(r *rng, voltage string) int64 {
	switch voltage {
	case "35kV":
		return 350 * pick(r, []int64{10, 20, 40})
	case "110kV":
		return 1100 * pick(r, []int64{20, 40, 60})
	default:
		return 100 * pick(r, []int64{10, 20, 40, 60})
	}
}

func (g *generator) companyName(r *rng, city string, t platform.CustomerType) string {
	if g.names == nil {
		g.names = map[string]bool{}
	}
	trades := industrialTrades
	if t != platform.LargeIndustry {
		trades = commercialTrades
	}
	for attempt := 0; ; attempt++ {
		name := city + pick(r, nameRoots) + pick(r, trades) + pick(r, companySuffixes)
		if attempt >= 5 {
			// Rare: keep drawing would be unbounded; number the plant.
			name = fmt.Sprintf("%s（%d分厂）", name, attempt)
		}
		if !g.names[name] {
			g.names[name] = true
			return name
		}
	}
}

// payBills makes the payments of one customer's bills according to its
// behaviour. Each payment pays the bill's amount due on the day it is
// posted (late fee included), except the deliberate part payments.
func (g *generator) payBills(r *rng, i int, beh behaviour, earlyPayer bool, bills []BillRecord) {
	// Overdue bills (due before today) from the newest back: arrears
	// customers leave the newest of them unpaid.
	var overdue []int
	for k := len(bills) - 1; k >= 0; k-- {
		if mustDay(bills[k].DueDate) < g.today {
			overdue = append(overdue, k)
		}
	}
	unpaid := map[int]bool{}
	partial := -1
	switch beh {
	case shortArrears:
		n := min(1+r.intn(3), len(overdue))
		for _, k := range overdue[:n] {
			unpaid[k] = true
		}
		if n > 0 && r.intn(2) == 0 {
			partial = overdue[n-1] // the oldest unpaid bill
		}
	case longArrears:
		n := min(5+r.intn(10), len(overdue))
		for _, k := range overdue[:n] {
			unpaid[k] = true
		}
	}

	for k, b := range bills {
		pr := newRNG(g.opts.Seed, streamPayment, uint64(i), uint64(k))
		issued, due := mustDay(b.IssuedOn), mustDay(b.DueDate)
		var payDay day
		switch {
		case beh == payLate:
			payDay = due + day(3+pr.intn(38))
		case earlyPayer:
			payDay = issued + day(2+pr.intn(9))
		default:
			payDay = due - day(pr.intn(7))
		}
		if unpaid[k] {
			if k == partial {
				g.pay(pr, b, due+day(2+pr.intn(9)), 30+pr.intn(41))
			}
			continue
		}
		if (beh == shortArrears || beh == longArrears) && due >= g.today {
			// Customers in arrears have not paid the bill that is not yet due either.
			continue
		}
		g.pay(pr, b, payDay, 100)
	}
}

// pay posts a payment of percent % of the bill's charges (100: the whole
// amount due on that day, late fee included) on payDay, unless that day
// has not come yet. Each bill gets at most one payment.
func (g *generator) pay(r *rng, b BillRecord, payDay day, percent int) {
	if payDay > g.today {
		return
	}
	charges := b.EnergyCharge + b.BasicCharge
	amount := charges * money.Fen(percent) / 100
	if percent == 100 {
		fee := lateFee(false, charges, mustDay(b.DueDate), nil, payDay)
		amount = charges + fee
	}
	if amount <= 0 {
		return
	}
	ref := "SIM" + b.ID
	if percent != 100 {
		ref += "-P"
	}
	p := g.newPayment(r, ref, b.CustomerID, amount, payDay)
	p.Allocations = []platform.Allocation{{BillID: b.ID, Amount: amount}}
	g.ds.Payments = append(g.ds.Payments, p)
}

// newPayment makes a payment made and posted on payDay during office hours
// in Shanghai.
func (g *generator) newPayment(r *rng, ref, customerID string, amount money.Fen, payDay day) PaymentRecord {
	t := payDay.time()
	paidAt := time.Date(t.Year(), t.Month(), t.Day(), 9, 0, 0, 0, platform.Shanghai).
		Add(time.Duration(r.intn(8*60)) * time.Minute).Add(time.Duration(r.intn(60)) * time.Second)
	channel := "bank"
	switch v := r.intn(100); {
	case v < 25:
		channel = "counter"
	case v < 40:
		channel = "unionpay"
	}
	return PaymentRecord{
		Payment: platform.Payment{
			Reference:    ref,
			CustomerID:   customerID,
			Amount:       amount,
			Channel:      channel,
			ChannelTxnID: fmt.Sprintf("%014d", r.uint64()%100_000_000_000_000),
			PaidAt:       paidAt.UTC(),
			PostedAt:     paidAt.Add(time.Duration(1+r.intn(30)) * time.Minute).UTC(),
			Status:       platform.PaymentPosted,
		},
		PostedOn: payDay.date(),
	}
}

// prepaid gives about a quarter of the customers a prepaid balance: one to
// three top-ups by bank transfer in the last year, and for some a load onto
// the USB key's wallet since.
func (g *generator) prepaid(i int, c platform.Customer) {
	r := newRNG(g.opts.Seed, streamPrepaid, uint64(i))
	acct := platform.PrepaidAccount{CustomerID: c.ID, UpdatedAt: g.epoch}
	if r.intn(4) == 0 {
		n := 1 + r.intn(3)
		var days []day
		for range n {
			days = append(days, g.today-day(1+r.intn(365)))
		}
		slices.Sort(days)
		for k, d := range days {
			amount := money.Yuan(int64(50+r.intn(1951)) * 100) // 5,000–200,000 yuan
			p := g.newPayment(r, fmt.Sprintf("SIMPRE%s-%d", c.ID, k+1), c.ID, amount, d)
			p.Prepaid = true
			g.ds.Payments = append(g.ds.Payments, p)
			acct.Balance += amount
			acct.UpdatedAt = p.PostedAt
			g.ds.PrepaidEntries = append(g.ds.PrepaidEntries, EntryRecord{
				PrepaidEntry: platform.PrepaidEntry{
					CustomerID: c.ID, Amount: amount, BalanceAfter: acct.Balance,
					Memo: "top-up by payment " + p.Reference, At: p.PostedAt,
				},
				PaymentReference: p.Reference,
			})
		}
		if last := days[len(days)-1]; r.intn(2) == 0 && last < g.today {
			amount := acct.Balance * money.Fen(10+r.intn(41)) / 100 / 100 * 100 // whole yuan
			next := (last + 1).time()
			at := time.Date(next.Year(), next.Month(), next.Day(), 8, 0, 0, 0, platform.Shanghai).
				Add(time.Duration(r.intn(10*60)) * time.Minute).UTC()
			acct.Balance -= amount
			acct.UpdatedAt = at
			if amount > 0 {
				g.ds.PrepaidEntries = append(g.ds.PrepaidEntries, EntryRecord{PrepaidEntry: platform.PrepaidEntry{
					Key: fmt.Sprintf("SIMLOAD%s-1", c.ID), CustomerID: c.ID, Amount: -amount, BalanceAfter: acct.Balance,
					Memo: "load onto USB key wallet", At: at,
				}})
			}
		}
	}
	g.ds.PrepaidAccounts = append(g.ds.PrepaidAccounts, acct)
}

// rng is SplitMix64: tiny, fast, and fixed here, so that a seed makes the
// same data whatever Go version runs it (math/rand makes no such promise
// for every method).
type rng struct{ s uint64 }

const golden = 0x9e3779b97f4a7c15

func newRNG(parts ...uint64) *rng {
	r := &rng{s: golden}
	for _, p := range parts {
		r.s ^= p
		r.s = r.uint64()
	}
	return r
}

func (r *rng) uint64() uint64 {
	r.s += golden
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a uniform integer in [0, n), without modulo bias.
func (r *rng) intn(n int) int {
	if n <= 0 {
		panic("rng.intn: n must be positive")
	}
	bound := uint64(n)
	limit := math.MaxUint64 - math.MaxUint64%bound
	for {
		if v := r.uint64(); v < limit {
			return int(v % bound)
		}
	}
}

// perm returns a permutation of 0..n-1 (Fisher–Yates).
func (r *rng) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }

// postPaymentOf is the request that would have posted p, for its request
// hash: replaying a seeded payment's content is a replay, not a conflict.
func postPaymentOf(p PaymentRecord) platform.PostPayment {
	return platform.PostPayment{
		Reference:    p.Reference,
		CustomerID:   p.CustomerID,
		Amount:       p.Amount,
		Allocations:  p.Allocations,
		Prepaid:      p.Prepaid,
		Channel:      p.Channel,
		ChannelTxnID: p.ChannelTxnID,
		PaidAt:       p.PaidAt,
	}
}
