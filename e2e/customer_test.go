//go:build integration

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/platform"
)

// A customer with a USB key logs in with the PIN and sees profile,
// consumption, bills, arrears and payment history over mutual TLS, with
// the real gateway, platform simulator, HSM and database.
func TestCustomerSeesTheirAccount(t *testing.T) {
	s := newStack(t)
	s.startSimulator()
	s.startGateway()

	a := s.provision(s.customer("--overdue", "--type", "large_industry"), "key-a")
	b := s.provision(s.customer("--settled"), "key-b")

	var me struct {
		Customer platform.Customer `json:"customer"`
		Alerts   []api.Alert       `json:"alerts"`
	}
	a.clientJSON(&me, "login")
	if me.Customer.ID != a.customerID || me.Customer.Name == "" {
		t.Fatalf("login shows %+v, want customer %s", me.Customer, a.customerID)
	}
	if !hasLevel(me.Alerts, api.AlertWarning, api.AlertCritical) {
		t.Fatalf("a customer in arrears gets no arrears alert at login: %+v", me.Alerts)
	}
	if r := a.client("login"); r.code != 0 || !strings.Contains(r.out, me.Customer.Name) || !strings.Contains(r.out, "overdue") {
		t.Fatalf("human login output: %s", r)
	}

	var info struct {
		Customer       platform.Customer        `json:"customer"`
		MeteringPoints []platform.MeteringPoint `json:"metering_points"`
	}
	a.clientJSON(&info, "info")
	if info.Customer.VoltageGrade == "" || len(info.MeteringPoints) == 0 {
		t.Fatalf("info: %+v", info)
	}

	var cons api.ConsumptionList
	a.clientJSON(&cons, "consumption", "--from", "2026-01", "--to", "2026-06")
	if len(cons.Items) != 6*len(info.MeteringPoints) {
		t.Fatalf("consumption: %d rows for 6 months × %d meters", len(cons.Items), len(info.MeteringPoints))
	}
	for _, c := range cons.Items {
		if c.PeakKWh+c.FlatKWh+c.ValleyKWh != c.TotalKWh || c.TotalKWh <= 0 {
			t.Fatalf("time-of-use split does not add up: %+v", c)
		}
	}

	var all api.BillList
	a.clientJSON(&all, "bills", "--all")
	var arrears api.ArrearsSummary
	a.clientJSON(&arrears, "arrears")
	var overdueSum, lateFees int64
	for _, bill := range all.Items {
		if bill.CustomerID != a.customerID {
			t.Fatalf("another customer's bill in the list: %+v", bill)
		}
		if bill.EnergyCharge+bill.BasicCharge+bill.LateFee-bill.Paid != bill.AmountDue {
			t.Fatalf("bill %s does not add up: %+v", bill.ID, bill)
		}
		if bill.Status == platform.BillOverdue {
			overdueSum += int64(bill.AmountDue)
			lateFees += int64(bill.LateFee)
		}
	}
	if arrears.Total <= 0 || int64(arrears.Total) != overdueSum || int64(arrears.LateFees) != lateFees {
		t.Fatalf("arrears %d (late %d) but overdue bills sum to %d (late %d)", arrears.Total, arrears.LateFees, overdueSum, lateFees)
	}
	var one platform.Bill
	a.clientJSON(&one, "bills", "--id", arrears.Bills[0].ID)
	if one.ID != arrears.Bills[0].ID || one.AmountDue != arrears.Bills[0].AmountDue {
		t.Fatalf("one bill: %+v", one)
	}
	var hist api.PaymentList
	a.clientJSON(&hist, "history")
	for _, p := range hist.Items {
		if p.CustomerID != a.customerID {
			t.Fatalf("another customer's payment in the history: %+v", p)
		}
	}

	// Customer A names customer B's bill: not found, exactly like a bill
	// that does not exist, and nothing of B's shows.
	var bBills api.BillList
	b.clientJSON(&bBills, "bills", "--all")
	foreign := a.client("bills", "--id", bBills.Items[0].ID)
	missing := a.client("bills", "--id", "B999999999")
	if foreign.code != cli.ExitNotFound || missing.code != cli.ExitNotFound {
		t.Fatalf("foreign bill: %s\nmissing bill: %s", foreign, missing)
	}
	if strings.Contains(foreign.err+foreign.out, b.customerID) || verdict(foreign) != verdict(missing) {
		t.Fatalf("a foreign bill is told apart from a missing one:\n%s\n%s", foreign, missing)
	}

	// The platform goes down: a clear "unavailable"; the gateway keeps
	// running and serves again once the platform is back.
	s.stop("platform-sim")
	r := a.client("bills")
	if r.code != cli.ExitUnavailable || !strings.Contains(r.err, "unavailable") {
		t.Fatalf("platform down: %s", r)
	}
	s.startSimulator()
	if r := a.client("bills"); r.code != 0 {
		t.Fatalf("after the platform came back: %s", r)
	}

	// Every refusal was audited, and the audit chain is intact.
	s.admin("audit", "verify")
}

// Wrong PINs: the client says how many tries are left, locks the key after
// five, and then refuses even the right PIN; the key can't log in.
func TestWrongPINLocksTheKey(t *testing.T) {
	s := newStack(t)
	s.startSimulator()
	s.startGateway()
	k := s.provision(s.customer("--open"), "key-pin")
	good := k.pinFile
	k.writeConfig(s.secret("wrong.pin", "000000"))
	for i := 1; i <= 5; i++ {
		r := k.client("login")
		if r.code != cli.ExitAuth || !strings.Contains(r.err, "wrong PIN") {
			t.Fatalf("wrong PIN %d: %s", i, r)
		}
		if left := 5 - i; left > 0 && !strings.Contains(r.err, fmt.Sprint(left)) {
			t.Fatalf("wrong PIN %d does not say %d tries are left: %s", i, left, r.err)
		}
	}
	k.writeConfig(good)
	r := k.client("login")
	if r.code != cli.ExitAuth || !strings.Contains(r.err, "locked") {
		t.Fatalf("the right PIN after lockout: %s", r)
	}

	// The administrator resets the PIN with the SO PIN: the key works
	// again with the new PIN, and the wrong PINs reach the audit log.
	wrongSO := s.secret("wrong.so-pin", "not-the-so-pin")
	newPIN := s.secret("new.pin", "new-pin-4321")
	r = s.exec(nil, "adminctl", "--config", s.config, "pin", "reset", "--token-label", "key-pin", "--so-pin-file", wrongSO, "--new-pin-file", newPIN)
	if r.code != cli.ExitAuth || !strings.Contains(r.err, "wrong SO PIN") {
		t.Fatalf("pin reset with a wrong SO PIN: %s", r)
	}
	s.admin("pin", "reset", "--token-label", "key-pin", "--so-pin-file", s.dir+"/key-pin.so-pin", "--new-pin-file", newPIN)
	k.writeConfig(newPIN)
	if r := k.client("login"); r.code != 0 {
		t.Fatalf("login after the reset: %s", r)
	}
	var reported int
	if err := s.db().QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'client.pin_failure'`).Scan(&reported); err != nil {
		t.Fatal(err)
	}
	if reported != 5 {
		t.Fatalf("%d wrong PINs in the audit log, want 5", reported)
	}
}

var requestID = regexp.MustCompile(`request [0-9a-f]+`)

// verdict is the client's error line without the request ID.
func verdict(r result) string {
	lines := strings.Split(strings.TrimSpace(r.err), "\n")
	return requestID.ReplaceAllString(lines[len(lines)-1], "request X")
}

func hasLevel(alerts []api.Alert, levels ...api.AlertLevel) bool {
	for _, a := range alerts {
		for _, l := range levels {
			if a.Level == l {
				return true
			}
		}
	}
	return false
}
