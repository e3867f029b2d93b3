package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/internal/derrors"
)

// Outcome is how an audited action ended.
type Outcome string

const (
	OutcomeOK      Outcome = "ok"
	OutcomeRefused Outcome = "refused" // rejected input: bad signature, revoked, wrong PIN…
	OutcomeError   Outcome = "error"   // failed on our side
)

// AuditRecord is what a caller appends to the audit log.
//
// Detail is stored as JSON and is readable by anyone who can read the
// database, so callers put only non-secret fields in it: identifiers,
// amounts in fen, reasons, hashes of signed messages — never a PIN, key
// material, a card number or a signature input. AppendAudit refuses keys
// that look like such secrets (see ErrSecretInDetail), but that is a safety
// net, not a filter to rely on.
//
// Numbers in Detail must be integers (money is int64 fen); use strings for
// anything else. This keeps the canonical encoding exact across the trip
// through jsonb.
type AuditRecord struct {
	Actor   string // who: operator name, token serial, workflow id
	Action  string // what, e.g. "certificate.revoke"
	Subject string // on what, e.g. a certificate serial
	Outcome Outcome
	Detail  map[string]any
}

// AuditEntry is a row of the audit log.
type AuditEntry struct {
	Seq     int64
	At      time.Time // UTC, microsecond precision, from the database clock
	Actor   string
	Action  string
	Subject string
	Outcome Outcome
	// Detail is JSON: canonical (exactly what was hashed) as returned by
	// AppendAudit, as PostgreSQL renders jsonb when read back. AuditHash
	// canonicalises it either way.
	Detail   json.RawMessage
	PrevHash []byte // Hash of entry Seq-1; 32 zero bytes for Seq 1
	Hash     []byte
}

var (
	// ErrSecretInDetail means an audit record's detail has a key named like
	// a secret (pin, password, private_key, card number…).
	ErrSecretInDetail = errors.New("audit detail must not carry secrets")
	// ErrAuditTampered means VerifyAudit found the log altered; the
	// *AuditTamperedError carrying it has the report.
	ErrAuditTampered = errors.New("audit log fails verification")
)

// genesisHash is the prev_hash of the first entry and the head of an empty
// log.
var genesisHash = make([]byte, sha256.Size)

// auditDomain starts every hashed encoding, so that an audit hash can never
// be mistaken for the hash of anything else we sign or store.
const auditDomain = "gridpay-audit-v1\n"

// auditTimeLayout renders At for hashing: UTC, always six fractional
// digits, e.g. 2025-03-01T08:00:00.123456Z.
const auditTimeLayout = "2006-01-02T15:04:05.000000Z"

// AuditHash computes the hash of an entry from its fields, PrevHash
// included (its own Hash field is ignored). The hashed bytes are, in order:
//
//	"gridpay-audit-v1\n"             the 17-byte domain string
//	seq                              8 bytes, unsigned big-endian
//	prev_hash                        field
//	at                               field: UTC as 2006-01-02T15:04:05.000000Z
//	actor, action, subject, outcome  four fields, UTF-8
//	detail                           field: canonical JSON (below)
//
// where a field is its length in bytes as 4 bytes unsigned big-endian
// followed by the bytes, which makes the encoding unambiguous whatever the
// strings contain. The hash is SHA-256 of all of it.
//
// Canonical JSON: no whitespace; object keys sorted by their UTF-8 bytes;
// strings with only '"' and '\' escaped by a backslash and control
// characters below U+0020 as \u00xx (lower-case hex), everything else as
// literal UTF-8; numbers only as integers in shortest decimal form (no
// exponent, no fraction, "-0" as "0"); true, false and null as such. Detail
// is parsed and re-encoded under these rules, so any JSON text of the same
// value gives the same hash.
func AuditHash(e AuditEntry) ([]byte, error) {
	detail, err := canonicalJSON(e.Detail)
	if err != nil {
		return nil, err
	}
	return auditHash(e, detail), nil
}

func auditHash(e AuditEntry, canonicalDetail []byte) []byte {
	h := sha256.New()
	h.Write([]byte(auditDomain))
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	h.Write(n[:])
	field := func(b []byte) {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(b)))
		h.Write(l[:])
		h.Write(b)
	}
	field(e.PrevHash)
	field([]byte(e.At.UTC().Format(auditTimeLayout)))
	field([]byte(e.Actor))
	field([]byte(e.Action))
	field([]byte(e.Subject))
	field([]byte(e.Outcome))
	field(canonicalDetail)
	return h.Sum(nil)
}

// AppendAudit appends a record to the audit log and returns the entry as
// stored. Pass a pgx.Tx to make the entry part of a caller's transaction
// (it then commits or rolls back with it), or the *DB to append on its own.
//
// Appends are serialised by a row lock on audit_head, held until the
// surrounding transaction ends, so keep transactions that append short.
// Inside a serializable transaction a concurrent append surfaces as a
// serialization failure, which Transact retries.
func AppendAudit(ctx context.Context, q Querier, rec AuditRecord) (_ AuditEntry, err error) {
	defer derrors.Wrap(&err, "store.AppendAudit(ctx, %q, %q)", rec.Action, rec.Subject)
	detail, err := auditDetail(rec)
	if err != nil {
		return AuditEntry{}, err
	}

	tx, err := q.Begin(ctx)
	if err != nil {
		return AuditEntry{}, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	var head AuditEntry
	err = tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head FOR UPDATE`).Scan(&head.Seq, &head.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return AuditEntry{}, errors.New("audit_head row is missing; the log was tampered with (run VerifyAudit)")
	}
	if err != nil {
		return AuditEntry{}, err
	}
	// Read the clock only once the lock is held, so that At never goes
	// backwards along the chain.
	var at time.Time
	if err := tx.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&at); err != nil {
		return AuditEntry{}, err
	}
	e := AuditEntry{
		Seq:      head.Seq + 1,
		At:       at.UTC().Truncate(time.Microsecond),
		Actor:    rec.Actor,
		Action:   rec.Action,
		Subject:  rec.Subject,
		Outcome:  rec.Outcome,
		Detail:   detail,
		PrevHash: head.Hash,
	}
	e.Hash = auditHash(e, detail)
	if _, err := tx.Exec(ctx, `
		INSERT INTO audit_log (seq, at, actor, action, subject, outcome, detail, prev_hash, hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9)`,
		e.Seq, e.At, e.Actor, e.Action, e.Subject, string(e.Outcome), string(detail), e.PrevHash, e.Hash); err != nil {
		return AuditEntry{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE audit_head SET seq = $1, hash = $2`, e.Seq, e.Hash); err != nil {
		return AuditEntry{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return AuditEntry{}, err
	}
	return e, nil
}

// auditDetail validates a record and returns its canonical detail.
func auditDetail(rec AuditRecord) ([]byte, error) {
	switch rec.Outcome {
	case OutcomeOK, OutcomeRefused, OutcomeError:
	default:
		return nil, fmt.Errorf("%w: outcome %q is not ok, refused or error", ErrInvalid, rec.Outcome)
	}
	if rec.Action == "" {
		return nil, fmt.Errorf("%w: action is empty", ErrInvalid)
	}
	for _, f := range []struct{ name, v string }{{"actor", rec.Actor}, {"action", rec.Action}, {"subject", rec.Subject}} {
		if err := checkText(f.v); err != nil {
			return nil, fmt.Errorf("%w: %s %v", ErrInvalid, f.name, err)
		}
	}
	raw, err := json.Marshal(rec.Detail)
	if err != nil {
		return nil, fmt.Errorf("%w: detail: %v", ErrInvalid, err)
	}
	if rec.Detail == nil {
		raw = []byte("{}")
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: detail: %v", ErrInvalid, err)
	}
	if key := secretKey(v); key != "" {
		return nil, fmt.Errorf("%w: key %q", ErrSecretInDetail, key)
	}
	var buf bytes.Buffer
	if err := writeCanonical(&buf, v); err != nil {
		return nil, fmt.Errorf("%w: detail: %v", ErrInvalid, err)
	}
	return buf.Bytes(), nil
}

// checkText rejects what a PostgreSQL text column cannot hold unchanged.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	if bytes.IndexByte([]byte(s), 0) >= 0 {
		return errors.New("contains a NUL character")
	}
	return nil
}

// AuditProblem says what VerifyAudit found wrong.
type AuditProblem string

const (
	// The row's content or hash was changed after it was written.
	AuditEdited AuditProblem = "row content does not match its hash (edited)"
	// Rows are missing before this seq (deleted from the middle).
	AuditGap AuditProblem = "seq is not contiguous: rows are missing (deleted)"
	// The row does not link to the hash of the row before it (rows were
	// replaced or re-linked).
	AuditBrokenLink AuditProblem = "prev_hash does not match the hash of the previous row"
	// audit_head records more rows than the log holds (the tail was
	// deleted).
	AuditTruncated AuditProblem = "rows recorded in audit_head are missing (tail deleted)"
	// The log holds rows beyond what audit_head records (inserted by hand).
	AuditUnrecorded AuditProblem = "row is beyond the head recorded in audit_head (inserted)"
	// audit_head's hash differs from the hash of the row it points at.
	AuditHeadMismatch AuditProblem = "audit_head hash does not match the last row"
	// The audit_head row itself is gone.
	AuditHeadMissing AuditProblem = "audit_head row is missing"
)

// AuditReport is the result of VerifyAudit.
type AuditReport struct {
	Checked  int64  `json:"checked"`   // rows read and verified before stopping
	HeadSeq  int64  `json:"head_seq"`  // as recorded in audit_head
	HeadHash []byte `json:"head_hash"` // as recorded in audit_head; compare with an external record to detect a consistent rewrite
	// FirstBadSeq and Problem describe the first inconsistency found;
	// both are zero when the log verifies.
	FirstBadSeq int64        `json:"first_bad_seq,omitempty"`
	Problem     AuditProblem `json:"problem,omitempty"`
	Explanation string       `json:"explanation,omitempty"`
}

// OK reports whether the log verified.
func (r AuditReport) OK() bool { return r.Problem == "" }

// AuditTamperedError is VerifyAudit's error for a log that fails
// verification. It matches ErrAuditTampered.
type AuditTamperedError struct{ Report AuditReport }

func (e *AuditTamperedError) Error() string {
	return fmt.Sprintf("audit log fails verification at seq %d: %s: %s", e.Report.FirstBadSeq, e.Report.Problem, e.Report.Explanation)
}

func (e *AuditTamperedError) Unwrap() error { return ErrAuditTampered }

// auditPageSize rows are read per query, keeping memory flat and each
// statement short however long the log grows.
const auditPageSize = 500

// VerifyAudit walks the whole audit log in seq order and checks that seq
// counts 1, 2, 3… without gaps, that each row's hash matches its content,
// that each prev_hash is the previous row's hash, and that audit_head points
// at the last row. It stops at the first problem and returns the report
// together with an *AuditTamperedError; a database failure is returned as
// an ordinary error.
//
// All reads happen in one read-only repeatable-read transaction, so appends
// running meanwhile neither disturb nor are included in the walk.
//
// A superuser who rewrites the tail and audit_head consistently cannot be
// detected from inside the database; compare HeadSeq and HeadHash with a
// copy kept elsewhere for that.
func (db *DB) VerifyAudit(ctx context.Context) (rep AuditReport, err error) {
	defer derrors.Wrap(&err, "store.VerifyAudit")
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	fail := func(seq int64, p AuditProblem, format string, args ...any) (AuditReport, error) {
		rep.FirstBadSeq, rep.Problem, rep.Explanation = seq, p, fmt.Sprintf(format, args...)
		return rep, &AuditTamperedError{Report: rep}
	}

	err = tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head`).Scan(&rep.HeadSeq, &rep.HeadHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return fail(1, AuditHeadMissing, "the single row of audit_head was deleted")
	}
	if err != nil {
		return rep, err
	}

	prev := AuditEntry{Seq: 0, Hash: genesisHash}
	for {
		page, err := auditPage(ctx, tx, prev.Seq, auditPageSize)
		if err != nil {
			return rep, err
		}
		for _, e := range page {
			want := prev.Seq + 1
			if e.Seq != want {
				return fail(want, AuditGap, "after seq %d the next row is seq %d", prev.Seq, e.Seq)
			}
			if e.Seq > rep.HeadSeq {
				return fail(e.Seq, AuditUnrecorded, "audit_head is at seq %d", rep.HeadSeq)
			}
			if !bytes.Equal(e.PrevHash, prev.Hash) {
				return fail(e.Seq, AuditBrokenLink, "prev_hash %x, hash of seq %d is %x", e.PrevHash, prev.Seq, prev.Hash)
			}
			detail, cerr := canonicalJSON(e.Detail)
			if cerr != nil {
				return fail(e.Seq, AuditEdited, "detail cannot be encoded canonically: %v", cerr)
			}
			if got := auditHash(e, detail); !bytes.Equal(got, e.Hash) {
				return fail(e.Seq, AuditEdited, "stored hash %x, content hashes to %x", e.Hash, got)
			}
			rep.Checked++
			prev = e
		}
		if len(page) < auditPageSize {
			break
		}
	}

	switch {
	case rep.HeadSeq > prev.Seq:
		return fail(prev.Seq+1, AuditTruncated, "audit_head is at seq %d but the last row is seq %d", rep.HeadSeq, prev.Seq)
	case !bytes.Equal(rep.HeadHash, prev.Hash):
		return fail(prev.Seq, AuditHeadMismatch, "audit_head hash %x, row hash %x", rep.HeadHash, prev.Hash)
	}
	return rep, nil
}

func auditPage(ctx context.Context, q Querier, after int64, limit int) ([]AuditEntry, error) {
	rows, err := q.Query(ctx, `
		SELECT seq, at, actor, action, subject, outcome, detail::text, prev_hash, hash
		FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var (
			e       AuditEntry
			outcome string
			detail  string
		)
		err := r.Scan(&e.Seq, &e.At, &e.Actor, &e.Action, &e.Subject, &outcome, &detail, &e.PrevHash, &e.Hash)
		e.At, e.Outcome, e.Detail = e.At.UTC(), Outcome(outcome), json.RawMessage(detail)
		return e, err
	})
}

// AuditHead is the latest entry of the audit log: what an anchor signs.
type AuditHead struct {
	Seq  int64     // 0 for an empty log
	Hash []byte    // hash of entry Seq; 32 zero bytes for an empty log
	At   time.Time // when entry Seq was appended; zero for an empty log
}

// ReadAuditHead reads audit_head and the entry it points at in one
// read-only transaction, and checks that they agree. A head whose entry is
// missing or has another hash is an *AuditTamperedError: it must not be
// anchored, and VerifyAudit says more.
func (db *DB) ReadAuditHead(ctx context.Context) (head AuditHead, err error) {
	defer derrors.Wrap(&err, "store.ReadAuditHead")
	err = db.Transact(ctx, TxOptions{Isolation: pgx.RepeatableRead, ReadOnly: true}, func(tx pgx.Tx) error {
		head = AuditHead{}
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head`).Scan(&head.Seq, &head.Hash)
		if errors.Is(err, pgx.ErrNoRows) {
			return &AuditTamperedError{Report: AuditReport{FirstBadSeq: 1, Problem: AuditHeadMissing, Explanation: "the single row of audit_head was deleted"}}
		}
		if err != nil {
			return err
		}
		if head.Seq == 0 {
			return nil
		}
		var hash []byte
		err = tx.QueryRow(ctx, `SELECT hash, at FROM audit_log WHERE seq = $1`, head.Seq).Scan(&hash, &head.At)
		if errors.Is(err, pgx.ErrNoRows) {
			return &AuditTamperedError{Report: AuditReport{HeadSeq: head.Seq, HeadHash: head.Hash, FirstBadSeq: head.Seq, Problem: AuditTruncated,
				Explanation: fmt.Sprintf("audit_head is at seq %d, which is not in the log", head.Seq)}}
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(hash, head.Hash) {
			return &AuditTamperedError{Report: AuditReport{HeadSeq: head.Seq, HeadHash: head.Hash, FirstBadSeq: head.Seq, Problem: AuditHeadMismatch,
				Explanation: fmt.Sprintf("audit_head hash %x, row hash %x", head.Hash, hash)}}
		}
		head.At = head.At.UTC()
		return nil
	})
	return head, err
}

// AuditHashes returns the hashes of the entries at seqs, by seq; a seq the
// log does not hold is absent from the map. Seq 0 maps to the genesis hash
// (the head of an empty log). Entries never change once written, so the
// answer can be compared with a chain walk made before.
func (db *DB) AuditHashes(ctx context.Context, seqs []int64) (_ map[int64][]byte, err error) {
	defer derrors.Wrap(&err, "store.AuditHashes(%d seqs)", len(seqs))
	out := make(map[int64][]byte, len(seqs))
	for _, s := range seqs {
		if s == 0 {
			out[0] = genesisHash
		}
	}
	rows, err := db.Query(ctx, `SELECT seq, hash FROM audit_log WHERE seq = ANY($1)`, seqs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			seq  int64
			hash []byte
		)
		if err := rows.Scan(&seq, &hash); err != nil {
			return nil, err
		}
		out[seq] = hash
	}
	return out, rows.Err()
}

// AuditLog appends to and reads the audit log on its own transactions; the
// audit anchoring activity uses it.
type AuditLog struct{ DB *DB }

// Audit appends rec to the audit log.
func (l AuditLog) Audit(ctx context.Context, rec AuditRecord) error {
	_, err := AppendAudit(ctx, l.DB, rec)
	return err
}

// Head reads the audit log's head (see DB.ReadAuditHead).
func (l AuditLog) Head(ctx context.Context) (AuditHead, error) { return l.DB.ReadAuditHead(ctx) }
