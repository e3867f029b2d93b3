//go:build integration

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"github.com/gridpay/gridpay/pki"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/testsuite"
	"go.uber.org/zap/zaptest"

	"github.com/gridpay/gridpay/activities"
	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/config"
	"github.com/gridpay/gridpay/internal/app"
	"github.com/gridpay/gridpay/store"
)

// auditVerifyJSON is what the test reads of audit verify --json.
type auditVerifyJSON struct {
	Checked     int64  `json:"checked"`
	HeadSeq     int64  `json:"head_seq"`
	Problem     string `json:"problem"`
	FirstBadSeq int64  `json:"first_bad_seq"`
	Anchors     *struct {
		Checked     int    `json:"checked"`
		NewestSeq   int64  `json:"newest_seq"`
		LastGoodSeq int64  `json:"last_good_seq"`
		FirstBadSeq int64  `json:"first_bad_seq"`
		Problem     string `json:"problem"`
		Explanation string `json:"explanation"`
	} `json:"anchors"`
}

// A database superuser rewrites the tail of the audit log and its head
// consistently: the chain walk cannot tell, the anchors signed in the HSM
// and kept outside the database can, and name the anchored entry.
func TestAuditAnchorsDetectConsistentRewrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := newStack(t, "audit-anchor-hsm")
	s.bin = build(t)
	for _, args := range [][]string{{"db", "migrate"}, {"ca", "init"}, {"ca", "issue", "--name", "audit", "--key-label", "gridpay-audit-signer"}} {
		if out, stderr, code := s.run(t, nil, args...); code != 0 {
			t.Fatalf("adminctl %v: exit %d\n%s%s", args, code, out, stderr)
		}
	}

	// The worker's side, in process: the anchoring activity with the
	// "audit" key in the HSM.
	for _, kv := range s.env {
		if k, v, _ := strings.Cut(kv, "="); k == "SOFTHSM2_CONF" {
			t.Setenv(k, v)
		}
	}
	cfg, err := config.Load(config.DefaultAdmin(), config.Source{File: s.config})
	if err != nil {
		t.Fatal(err)
	}
	db, err := app.OpenDB(ctx, cfg.Database, "test", true)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tok, err := app.OpenHSM(cfg.HSM, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	ca, err := authority.Open(ctx, authority.HSMKeys{Token: tok}, db, app.AuthorityOptions(cfg.PKI))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	anchors := &activities.AuditAnchors{Log: store.AuditLog{DB: db}, Dir: dir,
		Signer: &activities.ServiceKey{Keys: ca.Keys(), Label: "gridpay-audit-signer", Intermediates: []*x509.Certificate{ca.Services.Cert},
			Service: activities.AuditSignerService}}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(anchors)
	anchor := func() activities.AnchorResult {
		t.Helper()
		v, err := env.ExecuteActivity(anchors.AnchorAudit)
		if err != nil {
			t.Fatal(err)
		}
		var res activities.AnchorResult
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	appendN := func(n int) {
		t.Helper()
		for i := range n {
			if _, err := store.AppendAudit(ctx, db, store.AuditRecord{Actor: "test", Action: "payment.settle", Subject: "P" + string(rune('A'+i)),
				Outcome: store.OutcomeOK, Detail: map[string]any{"amount_fen": 1000 + i}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(5)
	first := anchor()
	appendN(6)
	second := anchor()
	if first.Seq < 5 || second.Seq != first.Seq+6 || first.File == "" || second.File == "" {
		t.Fatalf("anchors: %+v, %+v", first, second)
	}

	verify := func(extra []string, args ...string) (auditVerifyJSON, int, string) {
		t.Helper()
		out, stderr, code := s.run(t, extra, append([]string{"audit", "verify", "--json"}, args...)...)
		var rep auditVerifyJSON
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("audit verify: exit %d, %v\n%s%s", code, err, out, stderr)
		}
		return rep, code, out
	}
	rep, code, out := verify(nil, "--anchors", dir)
	if code != 0 || rep.Problem != "" || rep.Anchors == nil || !(rep.Anchors.Checked == 2 && rep.Anchors.NewestSeq == second.Seq && rep.Anchors.Problem == "") {
		t.Fatalf("intact log: exit %d\n%s", code, out)
	}

	// The attack: entries from first.Seq+3 on are replaced by forged ones,
	// the chain recomputed and the head moved to match, triggers off.
	from := first.Seq + 3
	forge(ctx, t, db, from, second.Seq)

	rep, code, out = verify(nil, "--anchors", "")
	if code != 0 || rep.Problem != "" || rep.HeadSeq != second.Seq || rep.Anchors != nil {
		t.Fatalf("the chain alone should not see the rewrite: exit %d\n%s", code, out)
	}
	// audit.anchor_dir from the configuration is the default.
	rep, code, out = verify([]string{"GRIDPAY_AUDIT_ANCHOR_DIR=" + dir})
	if code != 1 || rep.Problem != "" || rep.Anchors == nil || rep.Anchors.FirstBadSeq != second.Seq ||
		rep.Anchors.Problem != string(activities.AnchorMismatch) || rep.Anchors.LastGoodSeq != first.Seq {
		t.Fatalf("the anchors should see the rewrite at seq %d (intact to %d): exit %d\n%s", second.Seq, first.Seq, code, out)
	}
	text, _, code := s.run(t, []string{"GRIDPAY_AUDIT_ANCHOR_DIR=" + dir}, "audit", "verify")
	if code != 1 || !strings.Contains(text, "audit log intact") || !strings.Contains(text, "TAMPERED at anchored entry #") {
		t.Fatalf("text report: exit %d\n%s", code, text)
	}

	// The same superuser now removes the rewritten tail too, moving the
	// head back: the newest anchor is beyond the head.
	truncate(ctx, t, db, from)
	rep, code, out = verify(nil, "--anchors", dir)
	if code != 1 || rep.Problem != "" || rep.HeadSeq != from-1 || rep.Anchors.FirstBadSeq != second.Seq ||
		rep.Anchors.Problem != string(activities.AnchorBeyondHead) {
		t.Fatalf("truncated log: exit %d\n%s", code, out)
	}

	// The anchors are checked up to the root CA ca init exported
	// (pki.dir/root.pem), not only the one the database holds: another
	// root there means the CA records were replaced.
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewRoot(rootKey, pki.RootOptions{CommonName: "Someone Else's Root", Organization: "X", Country: "CN"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.PKI.Dir, "root.pem"), pki.EncodeCertificatesPEM(other), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := s.run(t, nil, "audit", "verify", "--anchors", dir); code != 1 || !strings.Contains(stderr, "is not in") {
		t.Fatalf("a root CA other than the pinned one: exit %d\n%s%s", code, out, stderr)
	}
}

// forge replaces entries from..to with forged ones whose chain and head
// are consistent, as a superuser can.
func forge(ctx context.Context, t *testing.T, db *store.DB, from, to int64) {
	t.Helper()
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		for _, sql := range []string{`ALTER TABLE audit_log DISABLE TRIGGER USER`, `ALTER TABLE audit_head DISABLE TRIGGER USER`} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		var prev []byte
		if err := tx.QueryRow(ctx, `SELECT hash FROM audit_log WHERE seq = $1`, from-1).Scan(&prev); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_log WHERE seq >= $1`, from); err != nil {
			return err
		}
		at := time.Now().UTC().Truncate(time.Microsecond)
		for seq := from; seq <= to; seq++ {
			e := store.AuditEntry{Seq: seq, At: at, Actor: "test", Action: "payment.settle", Subject: "FORGED", Outcome: store.OutcomeOK,
				Detail: []byte(`{"amount_fen":1}`), PrevHash: prev}
			h, err := store.AuditHash(e)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO audit_log (seq, at, actor, action, subject, outcome, detail, prev_hash, hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9)`, e.Seq, e.At, e.Actor, e.Action, e.Subject, string(e.Outcome), string(e.Detail), prev, h); err != nil {
				return err
			}
			prev = h
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_head SET seq = $1, hash = $2`, to, prev); err != nil {
			return err
		}
		for _, sql := range []string{`ALTER TABLE audit_log ENABLE TRIGGER USER`, `ALTER TABLE audit_head ENABLE TRIGGER USER`} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("forging the tail: %v", err)
	}
}

// truncate removes entries from seq on and moves the head back to the
// entry before, consistently.
func truncate(ctx context.Context, t *testing.T, db *store.DB, from int64) {
	t.Helper()
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		// The other way around the triggers: as a replica, none fires.
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audit_log WHERE seq >= $1`, from); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE audit_head SET seq = seq_hash.seq, hash = seq_hash.hash
			FROM (SELECT seq, hash FROM audit_log WHERE seq = $1) AS seq_hash`, from-1)
		return err
	})
	if err != nil {
		t.Fatalf("truncating the log: %v", err)
	}
}
