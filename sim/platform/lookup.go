package simplatform

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
)

// Find describes customers to look for in the seeded data, as they stand
// today. Every condition set must hold; the zero Find matches everyone.
type Find struct {
	Type        platform.CustomerType // "" for any
	Overdue     bool                  // at least one overdue bill (in arrears)
	CarriedOver bool                  // an overdue bill due in an earlier year (the 3‰ rate applies)
	Open        bool                  // at least one open bill (issued, not yet due, unpaid)
	PartlyPaid  bool                  // an unpaid bill with something paid towards it
	AllSettled  bool                  // no open or overdue bill
	Prepaid     bool                  // a positive prepaid balance
}

// FindCustomers returns up to limit (≤ 0: all) customer IDs matching f, in
// ID order, for tests and demos that need "a customer in arrears" or "a
// customer with an open bill" without knowing the seed.
func (p *Platform) FindCustomers(ctx context.Context, f Find, limit int) (_ []string, err error) {
	defer derrors.Wrap(&err, "simplatform.FindCustomers")
	var out []string
	err = p.db.Transact(ctx, store.TxOptions{Isolation: pgx.RepeatableRead, ReadOnly: true}, func(tx pgx.Tx) error {
		out = nil
		type cust struct {
			id      string
			typ     platform.CustomerType
			balance money.Fen
		}
		rows, err := tx.Query(ctx, `SELECT c.id, c.type, coalesce(a.balance, 0) FROM platform_sim.customers c
			LEFT JOIN platform_sim.prepaid_accounts a ON a.customer_id = c.id ORDER BY c.id`)
		if err != nil {
			return err
		}
		customers, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cust, error) {
			var c cust
			err := r.Scan(&c.id, &c.typ, &c.balance)
			return c, err
		})
		if err != nil {
			return err
		}
		bills, err := queryBills(ctx, tx, `SELECT `+billColumns+` FROM platform_sim.bills ORDER BY customer_id, period`)
		if err != nil {
			return err
		}
		paid := map[string][]paidOn{}
		prow, err := tx.Query(ctx, `SELECT a.bill_id, p.posted_on, a.amount FROM platform_sim.allocations a
			JOIN platform_sim.payments p ON p.reference = a.payment_reference WHERE p.status = 'posted'`)
		if err != nil {
			return err
		}
		for prow.Next() {
			var id string
			var on time.Time
			var amount money.Fen
			if err := prow.Scan(&id, &on, &amount); err != nil {
				prow.Close()
				return err
			}
			paid[id] = append(paid[id], paidOn{dayFromTime(on), amount})
		}
		prow.Close()
		if err := prow.Err(); err != nil {
			return err
		}
		byCustomer := map[string][]billView{}
		today := p.ledger.today()
		for _, b := range bills {
			byCustomer[b.CustomerID] = append(byCustomer[b.CustomerID], b.view(paid[b.ID], today))
		}
		for _, c := range customers {
			if f.matches(c.typ, c.balance, byCustomer[c.id], today) {
				out = append(out, c.id)
				if limit > 0 && len(out) == limit {
					break
				}
			}
		}
		return nil
	})
	return out, err
}

func (f Find) matches(t platform.CustomerType, balance money.Fen, bills []billView, today day) bool {
	var overdue, carried, open, partly, unpaid bool
	for _, b := range bills {
		switch b.Status {
		case platform.BillOverdue:
			overdue, unpaid = true, true
			if b.DueDay.year() < today.year() {
				carried = true
			}
		case platform.BillOpen:
			open, unpaid = true, true
		}
		if b.Status != platform.BillSettled && b.Paid > 0 {
			partly = true
		}
	}
	return (f.Type == "" || f.Type == t) &&
		(!f.Overdue || overdue) &&
		(!f.CarriedOver || carried) &&
		(!f.Open || open) &&
		(!f.PartlyPaid || partly) &&
		(!f.AllSettled || !unpaid) &&
		(!f.Prepaid || balance > 0)
}
