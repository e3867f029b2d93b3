package simplatform

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/store"
)

// SeedReport says what Seed wrote.
type SeedReport struct {
	Options        SeedOptions   `json:"options"`
	Customers      int           `json:"customers"`
	MeteringPoints int           `json:"metering_points"`
	Consumption    int           `json:"consumption"`
	Bills          int           `json:"bills"`
	Payments       int           `json:"payments"`
	PrepaidEntries int           `json:"prepaid_entries"`
	Hash           string        `json:"hash"` // Dataset.Hash of the data written
	Took           time.Duration `json:"took"`
}

// Seed replaces all of the simulator's data with the dataset of opts, in
// one transaction: a simulator that is serving sees the old data or the
// new, never a mix. An empty opts.Today means the simulator's today.
func (p *Platform) Seed(ctx context.Context, opts SeedOptions) (_ SeedReport, err error) {
	defer derrors.Wrap(&err, "simplatform.Seed")
	start := time.Now()
	if opts.Today == "" {
		opts.Today = p.Today()
	}
	ds, err := Generate(opts)
	if err != nil {
		return SeedReport{}, err
	}
	if err := p.db.Transact(ctx, store.TxOptions{Isolation: pgx.ReadCommitted, MaxAttempts: 1}, func(tx pgx.Tx) error {
		return write(ctx, tx, ds)
	}); err != nil {
		return SeedReport{}, err
	}
	r := SeedReport{
		Options:        ds.Options,
		Customers:      len(ds.Customers),
		MeteringPoints: len(ds.MeteringPoints),
		Consumption:    len(ds.Consumption),
		Bills:          len(ds.Bills),
		Payments:       len(ds.Payments),
		PrepaidEntries: len(ds.PrepaidEntries),
		Hash:           ds.Hash(),
		Took:           time.Since(start),
	}
	p.log.Info("seeded", zap.Int("customers", r.Customers), zap.Int("bills", r.Bills), zap.Int("payments", r.Payments),
		zap.Uint64("seed", opts.Seed), zap.String("today", string(opts.Today)), zap.String("hash", r.Hash), zap.Duration("took", r.Took))
	return r, nil
}

// write empties the tables and copies the dataset in.
func write(ctx context.Context, tx pgx.Tx, ds *Dataset) error {
	if _, err := tx.Exec(ctx, `TRUNCATE platform_sim.prepaid_entries, platform_sim.prepaid_accounts, platform_sim.allocations,
		platform_sim.payments, platform_sim.bills, platform_sim.consumption, platform_sim.metering_points, platform_sim.customers`); err != nil {
		return err
	}
	copyRows := func(table string, cols []string, n int, row func(i int) []any) error {
		src := pgx.CopyFromSlice(n, func(i int) ([]any, error) { return row(i), nil })
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{Schema, table}, cols, src); err != nil {
			return fmt.Errorf("copying %s: %w", table, err)
		}
		return nil
	}
	if err := copyRows("customers", []string{"id", "account_number", "name", "type", "voltage_grade", "contract_capacity_kva",
		"contact_name", "contact_phone", "address"}, len(ds.Customers), func(i int) []any {
		c := ds.Customers[i]
		return []any{c.ID, c.AccountNumber, c.Name, string(c.Type), c.VoltageGrade, c.ContractCapacityKVA, c.ContactName, c.ContactPhone, c.Address}
	}); err != nil {
		return err
	}
	if err := copyRows("metering_points", []string{"id", "customer_id", "meter_number", "location", "multiplier"},
		len(ds.MeteringPoints), func(i int) []any {
			m := ds.MeteringPoints[i]
			return []any{m.ID, m.CustomerID, m.MeterNumber, m.Location, m.Multiplier}
		}); err != nil {
		return err
	}
	if err := copyRows("consumption", []string{"metering_point_id", "period", "peak_kwh", "flat_kwh", "valley_kwh"},
		len(ds.Consumption), func(i int) []any {
			c := ds.Consumption[i]
			return []any{c.MeteringPointID, string(c.Period), c.PeakKWh, c.FlatKWh, c.ValleyKWh}
		}); err != nil {
		return err
	}
	if err := copyRows("bills", []string{"id", "customer_id", "period", "issued_on", "due_date", "kwh", "energy_charge", "basic_charge"},
		len(ds.Bills), func(i int) []any {
			b := ds.Bills[i]
			return []any{b.ID, b.CustomerID, string(b.Period), mustDay(b.IssuedOn).time(), mustDay(b.DueDate).time(),
				b.KWh, int64(b.EnergyCharge), int64(b.BasicCharge)}
		}); err != nil {
		return err
	}
	if err := copyRows("payments", []string{"reference", "customer_id", "amount", "prepaid", "channel", "channel_txn_id",
		"paid_at", "posted_at", "posted_on", "status", "request_hash"}, len(ds.Payments), func(i int) []any {
		p := ds.Payments[i]
		return []any{p.Reference, p.CustomerID, int64(p.Amount), p.Prepaid, p.Channel, p.ChannelTxnID,
			p.PaidAt, p.PostedAt, mustDay(p.PostedOn).time(), string(p.Status), requestHash(postPaymentOf(p))}
	}); err != nil {
		return err
	}
	type alloc struct {
		ref string
		pos int
		id  string
		amt int64
	}
	var allocs []alloc
	for _, p := range ds.Payments {
		for k, a := range p.Allocations {
			allocs = append(allocs, alloc{p.Reference, k, a.BillID, int64(a.Amount)})
		}
	}
	if err := copyRows("allocations", []string{"payment_reference", "position", "bill_id", "amount"}, len(allocs), func(i int) []any {
		a := allocs[i]
		return []any{a.ref, a.pos, a.id, a.amt}
	}); err != nil {
		return err
	}
	if err := copyRows("prepaid_accounts", []string{"customer_id", "balance", "updated_at"}, len(ds.PrepaidAccounts), func(i int) []any {
		a := ds.PrepaidAccounts[i]
		return []any{a.CustomerID, int64(a.Balance), a.UpdatedAt}
	}); err != nil {
		return err
	}
	return copyRows("prepaid_entries", []string{"key", "customer_id", "amount", "balance_after", "memo", "at", "payment_reference"},
		len(ds.PrepaidEntries), func(i int) []any {
			e := ds.PrepaidEntries[i]
			return []any{nullIfEmpty(e.Key), e.CustomerID, int64(e.Amount), int64(e.BalanceAfter), e.Memo, e.At, nullIfEmpty(e.PaymentReference)}
		})
}
