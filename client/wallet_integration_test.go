//go:build integration

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/money"
)

// The wallet and the meter card on real SoftHSM2 tokens, through the built
// client: the wallet object is private on the key (the session that writes
// it shares the PIN's login), a load credits it, a transfer moves money
// onto a second token acting as the card, and an interrupted transfer is
// finished by the next card operation.
func TestWalletAndCardOnSoftHSM(t *testing.T) {
	f := newTokenFixture(t)
	key := provisionKey(t, f.s, "Wallet key", f.pki, time.Now().Add(-time.Hour), 365*24*time.Hour)
	card := f.s.NewTestToken(t, "Meter card")
	gw := newLoadServer(t, f.pki, loadService)
	dir := t.TempDir()
	pin := filepath.Join(dir, "key.pin")
	if err := os.WriteFile(pin, []byte(key.UserPIN), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, dir,
		"log: {level: warn, format: console}",
		fmt.Sprintf("token: {module: %s, serial: %q, pin: {file: %s}}", f.s.ModulePath(), key.Serial, pin),
		"gateway_url: "+gw.srv.URL,
		"ca_file: "+f.pki.rootFile,
		"state_dir: "+filepath.Join(dir, "state"),
		"timeout: 10s",
	)
	env := []string{"GRIDPAY_CARD_PIN=" + card.UserPIN}
	run := func(v any, args ...string) result {
		t.Helper()
		r := f.exec(t, nil, env, append([]string{"--config", cfg}, args...)...)
		if v != nil && r.code == 0 {
			if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, r.stdout)
			}
		}
		return r
	}

	var res loadResult
	if r := run(&res, "load", "--amount", "500.00", "--yes", "--json"); r.code != 0 || res.Status != "confirmed" || res.Balance != 500_00 {
		t.Fatalf("load: %s", r)
	}
	var w walletView
	if r := run(&w, "wallet", "--json"); r.code != 0 || w.Balance != 500_00 || w.Sequence != 1 || !w.LogOK || len(w.Recent) != 1 {
		t.Fatalf("wallet: %s", r)
	}
	// The wallet is a private object: without the PIN it cannot even be
	// seen.
	pub, err := hsm.OpenToken(f.s.ModulePath(), hsm.Selector{Serial: key.Serial}, nil, hsm.Options{NoLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.ReadData(context.Background(), walletApplication, walletLabel); !errors.Is(err, hsm.ErrObjectNotFound) {
		t.Fatalf("the wallet is readable without the PIN: %v", err)
	}
	pub.Close()

	var c cardView
	cardArgs := []string{"--card-serial", card.Serial, "--json"}
	if r := run(&c, append([]string{"card", "issue", "--card-number", "3301-0001-0007"}, cardArgs...)...); r.code != 0 || c.Card != "****0007" {
		t.Fatalf("card issue: %s", r)
	}
	if r := run(&c, append([]string{"card", "transfer", "--amount", "120.00", "--yes"}, cardArgs...)...); r.code != 0 ||
		c.CardBalance != 120_00 || c.WalletBalance != 380_00 || c.Total != 500_00 {
		t.Fatalf("transfer: %s", r)
	}
	// Interrupted after the card took it: the next operation commits.
	env = append(env, cardFaultEnv+"=crash-after-card")
	if r := run(nil, append([]string{"card", "transfer", "--amount", "80.00", "--yes"}, cardArgs...)...); r.code == 0 {
		t.Fatalf("the fault did not interrupt: %s", r)
	}
	env = env[:1]
	if r := run(&c, append([]string{"card", "balance"}, cardArgs...)...); r.code != 0 || c.Recovered != "completed" ||
		c.CardBalance != 200_00 || c.WalletBalance != 300_00 || c.Total != money.Fen(500_00) {
		t.Fatalf("recovered: %s", r)
	}
	// A second load reports what the wallet holds after the transfers.
	if r := run(&res, "load", "--amount", "10.00", "--yes", "--json"); r.code != 0 || res.Balance != 310_00 {
		t.Fatalf("load after transfers: %s", r)
	}
	if req := gw.requests[len(gw.requests)-1]; req.WalletBalance != 300_00 || req.WalletSequence != 1 {
		t.Fatalf("request %+v", req)
	}
}
