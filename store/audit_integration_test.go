//go:build integration

package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The head an anchor signs: read in a read-only transaction, checked
// against its entry; and the hashes a verifier compares anchors with.
func TestReadAuditHeadAndHashes(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)

	head, err := db.ReadAuditHead(ctx)
	if err != nil || head.Seq != 0 || !bytes.Equal(head.Hash, genesisHash) || !head.At.IsZero() {
		t.Fatalf("empty log: %+v, %v", head, err)
	}
	appendN(t, db, 5, 1)
	head, err = db.ReadAuditHead(ctx)
	if err != nil || head.Seq != 5 || head.At.IsZero() || head.At.Location().String() != "UTC" {
		t.Fatalf("head: %+v, %v", head, err)
	}
	var last []byte
	db.QueryRow(ctx, `SELECT hash FROM audit_log WHERE seq = 5`).Scan(&last)
	if !bytes.Equal(head.Hash, last) {
		t.Fatalf("head hash %x, entry 5 is %x", head.Hash, last)
	}
	// The read is read-only: it does not move the head, and another
	// AuditLog.Head answers the same.
	if h2, err := (AuditLog{DB: db}).Head(ctx); err != nil || h2.Seq != 5 || !bytes.Equal(h2.Hash, head.Hash) {
		t.Fatalf("AuditLog.Head: %+v, %v", h2, err)
	}

	hashes, err := db.AuditHashes(ctx, []int64{0, 2, 5, 99})
	if err != nil || len(hashes) != 3 || !bytes.Equal(hashes[5], last) || !bytes.Equal(hashes[0], genesisHash) || len(hashes[2]) != 32 {
		t.Fatalf("AuditHashes: %x, %v", hashes, err)
	}
	if _, ok := hashes[99]; ok {
		t.Fatal("a seq beyond the log has a hash")
	}

	// A head that does not match its entry is refused, not anchored.
	if err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE audit_head DISABLE TRIGGER USER`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_head SET hash = $1`, bytes.Repeat([]byte{7}, 32)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ALTER TABLE audit_head ENABLE TRIGGER USER`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_, err = db.ReadAuditHead(ctx)
	var te *AuditTamperedError
	if !errors.Is(err, ErrAuditTampered) || !errors.As(err, &te) || te.Report.Problem != AuditHeadMismatch || te.Report.FirstBadSeq != 5 {
		t.Fatalf("mismatched head: %v", err)
	}
	// The head pointing past the log.
	tamper(t, db, `DELETE FROM audit_log WHERE seq = 5`)
	if _, err = db.ReadAuditHead(ctx); !errors.As(err, &te) || te.Report.Problem != AuditTruncated {
		t.Fatalf("head past the log: %v", err)
	}
}
