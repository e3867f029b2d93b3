package activities

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/store"
)

// Anchors of the audit log.
//
// The audit log is hash-chained inside PostgreSQL, which shows any edit
// except one: a superuser who rewrites the tail, recomputes the chain and
// moves audit_head to match. An anchor is a checkpoint of the head (seq and
// hash of that entry, and when), signed by a key in the HSM whose
// certificate is a services-CA certificate of service "audit", kept where
// the database's administrators cannot write: the result of the
// AnchorAudit workflow in Temporal's history, and a file in an append-only
// directory. Any later rewrite of an anchored entry, or removal of rows up
// to an anchored seq, no longer matches the anchor.
//
// The signed bytes are the checkpoint's canonical encoding: JSON without
// whitespace, fields in this order, all present:
//
//	{"version":1,"seq":42,"hash":"<64 lower-case hex digits>","time":"2025-03-01T08:00:00.123456Z","signer":"<certificate serial, hex>"}
//
// version is 1; seq the entry's seq (0: the empty log, whose hash is 32
// zero bytes); hash that entry's audit hash (store.AuditHash); time the
// anchoring time in UTC with exactly six fractional digits; signer the
// serial of the signing certificate as pki.SerialHex writes it. The
// signature is ECDSA (ASN.1 DER), by the "audit" key, over
// SHA-256("gridpay-audit-anchor-v1\n" || checkpoint bytes), so it can never
// pass for a signature of anything else GridPay signs. A verifier checks
// that the bytes it holds re-encode to themselves, so that no two byte
// strings carry the same checkpoint.
//
// An anchor file holds, as one line of JSON, {"checkpoint": <the
// checkpoint bytes, verbatim>, "signature": "<base64>", "chain":
// ["<base64 DER>", …]} (the signer's certificate first, then the services
// CA), and is named audit-anchor-<seq, 20 digits>.json, so that names sort
// by seq. It is created with O_EXCL and never rewritten.

// AuditSignerService is the service name the anchor signer's certificate
// carries.
const AuditSignerService = "audit"

// AnchorVersion is the version of the checkpoint encoding.
const AnchorVersion = 1

// Error types of AnchorAudit's failures.
const (
	// ErrTypeAnchorConflict: an anchor file for the head's seq exists with
	// another hash. Non-retryable and audited: someone rewrote the log (or
	// the file) and an operator must look.
	ErrTypeAnchorConflict = "AuditAnchorConflict"
	// ErrTypeAuditTampered: audit_head does not match the entry it points
	// at; an inconsistent head is not anchored. Non-retryable.
	ErrTypeAuditTampered = "AuditTampered"
	// ErrTypeAuditSignerUnavailable: the "audit" key or its certificate is
	// missing or wrong in the HSM. Retryable: an operator may issue it.
	ErrTypeAuditSignerUnavailable = "AuditSignerUnavailable"
)

const (
	anchorDomain     = "gridpay-audit-anchor-v1\n"
	anchorTimeLayout = "2006-01-02T15:04:05.000000Z"
	anchorPrefix     = "audit-anchor-"
	anchorSuffix     = ".json"
)

// Checkpoint is what an anchor signs.
type Checkpoint struct {
	Version int
	Seq     int64
	Hash    []byte // audit hash of entry Seq
	Time    time.Time
	Signer  string // serial of the signing certificate (hex)
}

// checkpointJSON fixes the field order of the encoding.
type checkpointJSON struct {
	Version int    `json:"version"`
	Seq     int64  `json:"seq"`
	Hash    string `json:"hash"`
	Time    string `json:"time"`
	Signer  string `json:"signer"`
}

// EncodeCheckpoint returns the canonical encoding of c (see above).
func EncodeCheckpoint(c Checkpoint) ([]byte, error) {
	if c.Version != AnchorVersion {
		return nil, fmt.Errorf("checkpoint version %d, want %d", c.Version, AnchorVersion)
	}
	if c.Seq < 0 || len(c.Hash) != sha256.Size || c.Signer == "" || c.Time.IsZero() {
		return nil, fmt.Errorf("incomplete checkpoint (seq %d, %d-byte hash, signer %q)", c.Seq, len(c.Hash), c.Signer)
	}
	return json.Marshal(checkpointJSON{Version: c.Version, Seq: c.Seq, Hash: hex.EncodeToString(c.Hash),
		Time: c.Time.UTC().Format(anchorTimeLayout), Signer: c.Signer})
}

// DecodeCheckpoint parses a canonical checkpoint; anything that does not
// re-encode to exactly b is refused.
func DecodeCheckpoint(b []byte) (Checkpoint, error) {
	var j checkpointJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint does not parse: %w", err)
	}
	hash, err := hex.DecodeString(j.Hash)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint hash: %w", err)
	}
	at, err := time.Parse(anchorTimeLayout, j.Time)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint time: %w", err)
	}
	c := Checkpoint{Version: j.Version, Seq: j.Seq, Hash: hash, Time: at.UTC(), Signer: j.Signer}
	again, err := EncodeCheckpoint(c)
	if err != nil {
		return Checkpoint{}, err
	}
	if !bytes.Equal(again, b) {
		return Checkpoint{}, errors.New("checkpoint is not in canonical form")
	}
	return c, nil
}

// CheckpointDigest is what the anchor key signs.
func CheckpointDigest(encoded []byte) []byte {
	h := sha256.New()
	h.Write([]byte(anchorDomain))
	h.Write(encoded)
	return h.Sum(nil)
}

// Anchor is a signed checkpoint, as written to a file and returned to
// Temporal.
type Anchor struct {
	Checkpoint json.RawMessage `json:"checkpoint"` // the signed bytes, verbatim
	Signature  []byte          `json:"signature"`
	Chain      [][]byte        `json:"chain"` // DER: signer, then the services CA
}

// AnchorResult is what an AnchorAudit run produced.
type AnchorResult struct {
	Seq    int64     `json:"seq"`
	Hash   string    `json:"hash"` // hex
	Time   time.Time `json:"time"`
	Signer string    `json:"signer"`
	// File is the anchor's file; empty when audit.anchor_dir is not set.
	File string `json:"file,omitempty"`
	// Reused: the file for this seq was there already (the head did not
	// move since the last anchor, or this is a retry); Anchor is that
	// file's, with its original time.
	Reused bool   `json:"reused,omitempty"`
	Anchor Anchor `json:"anchor"`
}

// AuditHeads is the audit log as the anchoring uses it; store.AuditLog is
// one.
type AuditHeads interface {
	Head(ctx context.Context) (store.AuditHead, error)
	Audit(ctx context.Context, rec store.AuditRecord) error
}

var _ AuditHeads = store.AuditLog{}

// AuditAnchors is the activity that anchors the audit log.
type AuditAnchors struct {
	Log AuditHeads
	// Signer hands out the "audit" key and its chain: a *ServiceKey
	// with Service AuditSignerService and the anchor key's label.
	Signer LoadSigner
	// Dir is the append-only directory of anchor files; empty: none.
	Dir string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (a *AuditAnchors) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

// AnchorFileName is the name of the anchor file of seq.
func AnchorFileName(seq int64) string {
	return fmt.Sprintf("%s%020d%s", anchorPrefix, seq, anchorSuffix)
}

// AnchorAudit signs a checkpoint of the audit log's head and writes it to
// Dir. When Dir already holds the anchor of that seq with the same hash
// (the head has not moved since the last run, or this is a retry) nothing
// is signed and that anchor is returned: a new anchor of an unchanged head
// would prove nothing a verifier checks. The same seq with another hash is
// an alarm: it is audited and the activity fails for good.
func (a *AuditAnchors) AnchorAudit(ctx context.Context) (AnchorResult, error) {
	head, err := a.Log.Head(ctx)
	if errors.Is(err, store.ErrAuditTampered) {
		return AnchorResult{}, temporal.NewNonRetryableApplicationError("the audit head is not anchored: "+err.Error(), ErrTypeAuditTampered, err)
	}
	if err != nil {
		return AnchorResult{}, err
	}
	path := ""
	if a.Dir != "" {
		path = filepath.Join(a.Dir, AnchorFileName(head.Seq))
		if res, found, err := a.existing(ctx, path, head); found || err != nil {
			return res, err
		}
	}

	signer, chain, err := a.Signer.LoadSigner(ctx)
	if err != nil {
		return AnchorResult{}, temporal.NewApplicationError(err.Error(), ErrTypeAuditSignerUnavailable)
	}
	cp := Checkpoint{Version: AnchorVersion, Seq: head.Seq, Hash: head.Hash, Time: a.now().Truncate(time.Microsecond),
		Signer: pki.SerialHex(chain[0].SerialNumber)}
	encoded, err := EncodeCheckpoint(cp)
	if err != nil {
		return AnchorResult{}, temporal.NewNonRetryableApplicationError(err.Error(), "Invalid", err)
	}
	sig, err := signer.Sign(rand.Reader, CheckpointDigest(encoded), crypto.SHA256)
	if err != nil {
		return AnchorResult{}, temporal.NewApplicationError("signing the audit anchor: "+err.Error(), ErrTypeAuditSignerUnavailable)
	}
	anchor := Anchor{Checkpoint: encoded, Signature: sig}
	for _, c := range chain {
		anchor.Chain = append(anchor.Chain, c.Raw)
	}
	res := AnchorResult{Seq: cp.Seq, Hash: hex.EncodeToString(cp.Hash), Time: cp.Time, Signer: cp.Signer, Anchor: anchor}
	if path == "" {
		return res, nil
	}
	err = writeAnchorFile(path, anchor)
	if errors.Is(err, fs.ErrExist) {
		// Another worker (or an earlier attempt whose answer was lost) got
		// there first: its anchor stands.
		res, _, err := a.existing(ctx, path, head)
		return res, err
	}
	if err != nil {
		return AnchorResult{}, fmt.Errorf("writing the audit anchor: %w", err)
	}
	res.File = path
	activity.GetLogger(ctx).Info("audit log anchored", "seq", cp.Seq, "file", path)
	return res, nil
}

// existing returns the anchor file at path if there is one and it anchors
// head; one that anchors anything else is the alarm.
func (a *AuditAnchors) existing(ctx context.Context, path string, head store.AuditHead) (AnchorResult, bool, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return AnchorResult{}, false, nil
	}
	if err != nil {
		return AnchorResult{}, false, fmt.Errorf("reading the audit anchor: %w", err)
	}
	anchor, cp, err := parseAnchorFile(raw)
	switch {
	case err != nil:
		return AnchorResult{}, true, a.conflict(ctx, path, head, err.Error())
	case cp.Seq != head.Seq:
		return AnchorResult{}, true, a.conflict(ctx, path, head, fmt.Sprintf("the file anchors seq %d", cp.Seq))
	case !bytes.Equal(cp.Hash, head.Hash):
		return AnchorResult{}, true, a.conflict(ctx, path, head, fmt.Sprintf("the file anchors hash %x, the log's entry is %x", cp.Hash, head.Hash))
	}
	return AnchorResult{Seq: cp.Seq, Hash: hex.EncodeToString(cp.Hash), Time: cp.Time, Signer: cp.Signer, File: path, Reused: true, Anchor: anchor}, true, nil
}

// conflict audits an anchor file that disagrees with the log, and fails
// the activity for good.
func (a *AuditAnchors) conflict(ctx context.Context, path string, head store.AuditHead, why string) error {
	msg := fmt.Sprintf("audit anchor %s disagrees with the audit log at seq %d: %s; the log or the anchor was tampered with (run adminctl audit verify)",
		path, head.Seq, why)
	err := a.Log.Audit(ctx, store.AuditRecord{Actor: actor(ctx), Action: "audit.anchor_conflict", Subject: strconv.FormatInt(head.Seq, 10),
		Outcome: store.OutcomeError, Detail: map[string]any{"file": path, "head_hash": hex.EncodeToString(head.Hash), "why": why}})
	if err != nil {
		// Retry: the alarm must be on record before the run gives up.
		return fmt.Errorf("auditing an anchor conflict (%s): %w", msg, err)
	}
	activity.GetLogger(ctx).Error("audit anchor conflict", "seq", head.Seq, "file", path, "why", why)
	return temporal.NewNonRetryableApplicationError(msg, ErrTypeAnchorConflict, nil)
}

// writeAnchorFile creates path, failing with fs.ErrExist if it is there,
// and makes the file and its name durable.
func writeAnchorFile(path string, anchor Anchor) error {
	b, err := json.Marshal(anchor)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	_, werr := f.Write(append(b, '\n'))
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// parseAnchorFile decodes an anchor file (the signature is not checked).
func parseAnchorFile(raw []byte) (Anchor, Checkpoint, error) {
	var a Anchor
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return Anchor{}, Checkpoint{}, fmt.Errorf("anchor does not parse: %w", err)
	}
	cp, err := DecodeCheckpoint(a.Checkpoint)
	if err != nil {
		return Anchor{}, Checkpoint{}, err
	}
	return a, cp, nil
}

// CertVerifier checks a certificate chain against GridPay's CAs and CRLs;
// *pki.Verifier is one.
type CertVerifier interface {
	Verify(chain []*x509.Certificate, now time.Time, usage x509.ExtKeyUsage) (pki.Identity, error)
}

// VerifyAnchor checks an anchor's signature, and that its signer is a
// certificate of service "audit" chaining to GridPay's root, valid and not
// revoked at the anchor's time, whose serial the checkpoint names.
func VerifyAnchor(a Anchor, v CertVerifier) (Checkpoint, error) {
	cp, err := DecodeCheckpoint(a.Checkpoint)
	if err != nil {
		return Checkpoint{}, err
	}
	if len(a.Chain) == 0 {
		return cp, errors.New("the anchor carries no certificate")
	}
	var chain []*x509.Certificate
	for i, der := range a.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return cp, fmt.Errorf("certificate %d of the anchor: %w", i, err)
		}
		chain = append(chain, c)
	}
	id, err := v.Verify(chain, cp.Time, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return cp, fmt.Errorf("the anchor's signer: %w", err)
	}
	if id.Kind != pki.KindService || id.Service != AuditSignerService {
		return cp, fmt.Errorf("the anchor is signed by %s, not service %q", id, AuditSignerService)
	}
	if got := pki.SerialHex(chain[0].SerialNumber); got != cp.Signer {
		return cp, fmt.Errorf("the checkpoint names signer %s, the certificate is %s", cp.Signer, got)
	}
	if err := protocol.VerifyDigest(chain[0], CheckpointDigest(a.Checkpoint), a.Signature); err != nil {
		return cp, fmt.Errorf("the anchor's signature: %w", err)
	}
	return cp, nil
}

// AnchorFile is an anchor read from a directory.
type AnchorFile struct {
	Name   string
	Anchor Anchor
	Err    error // the file does not read or parse
}

// ReadAnchorDir reads every anchor file of dir (audit-anchor-*.json),
// ordered by name, which is by seq. Other files are ignored.
func ReadAnchorDir(dir string) ([]AnchorFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the anchor directory: %w", err)
	}
	var out []AnchorFile
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, anchorPrefix) || !strings.HasSuffix(name, anchorSuffix) || e.IsDir() {
			continue
		}
		f := AnchorFile{Name: name}
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err == nil {
			f.Anchor, _, err = parseAnchorFile(raw)
		}
		f.Err = err
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b AnchorFile) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// AnchorProblem says what CheckAnchors found wrong.
type AnchorProblem string

const (
	AnchorUnreadable   AnchorProblem = "anchor does not parse"
	AnchorBadSignature AnchorProblem = "anchor signature or signer does not verify"
	AnchorMisnamed     AnchorProblem = "anchor file name does not match its seq"
	AnchorBeyondHead   AnchorProblem = "anchor is newer than the log's head (rows removed)"
	AnchorMissingEntry AnchorProblem = "the entry at the anchor's seq is missing (rows removed)"
	AnchorMismatch     AnchorProblem = "the entry at the anchor's seq has another hash (log rewritten)"
)

// AnchorReport is the result of CheckAnchors.
type AnchorReport struct {
	Source  string `json:"source"`  // the directory (or "temporal")
	Checked int    `json:"checked"` // anchors examined
	// NewestSeq and NewestTime are those of the newest anchor whose
	// signature verified.
	NewestSeq  int64     `json:"newest_seq"`
	NewestTime time.Time `json:"newest_time,omitzero"`
	// LastGoodSeq is the newest anchor that matched the log below the
	// first bad one: the log is proven intact up to there.
	LastGoodSeq int64 `json:"last_good_seq"`
	// The first problem in seq order; zero when every anchor matches.
	FirstBadSeq  int64         `json:"first_bad_seq,omitempty"`
	FirstBadName string        `json:"first_bad_name,omitempty"`
	Problem      AnchorProblem `json:"problem,omitempty"`
	Explanation  string        `json:"explanation,omitempty"`
}

// OK reports whether every anchor matched the log.
func (r AnchorReport) OK() bool { return r.Problem == "" }

// AuditHashLookup returns the hashes of the entries at seqs (absent: no
// such entry); store.DB.AuditHashes is one.
type AuditHashLookup func(ctx context.Context, seqs []int64) (map[int64][]byte, error)

// CheckAnchors checks anchors (read before the chain walk that produced
// headSeq, so that none can be newer than the head honestly) against the
// log: each must verify (VerifyAnchor), be no newer than the head, and the
// log's entry at its seq must have exactly its hash. A file's name must
// match its seq. Only a failure to read the log is an error.
func CheckAnchors(ctx context.Context, source string, files []AnchorFile, v CertVerifier, lookup AuditHashLookup, headSeq int64) (AnchorReport, error) {
	rep := AnchorReport{Source: source}
	type checked struct {
		name string
		cp   Checkpoint
	}
	var good []checked
	bad := func(seq int64, name string, p AnchorProblem, format string, args ...any) {
		if rep.Problem != "" && seq >= rep.FirstBadSeq {
			return
		}
		rep.FirstBadSeq, rep.FirstBadName, rep.Problem, rep.Explanation = seq, name, p, fmt.Sprintf(format, args...)
	}
	for _, f := range files {
		rep.Checked++
		seq := seqOfName(f.Name)
		if f.Err != nil {
			bad(seq, f.Name, AnchorUnreadable, "%v", f.Err)
			continue
		}
		cp, err := VerifyAnchor(f.Anchor, v)
		if err != nil {
			if seq == 0 {
				seq = cp.Seq
			}
			bad(seq, f.Name, AnchorBadSignature, "%v", err)
			continue
		}
		if strings.HasPrefix(f.Name, anchorPrefix) && f.Name != AnchorFileName(cp.Seq) {
			bad(cp.Seq, f.Name, AnchorMisnamed, "the file anchors seq %d", cp.Seq)
			continue
		}
		if cp.Seq > rep.NewestSeq || rep.NewestTime.IsZero() {
			rep.NewestSeq, rep.NewestTime = cp.Seq, cp.Time
		}
		good = append(good, checked{f.Name, cp})
	}
	var seqs []int64
	for _, g := range good {
		seqs = append(seqs, g.cp.Seq)
	}
	hashes, err := lookup(ctx, seqs)
	if err != nil {
		return rep, err
	}
	var matched []int64
	for _, g := range good {
		h, ok := hashes[g.cp.Seq]
		switch {
		case g.cp.Seq > headSeq:
			bad(g.cp.Seq, g.name, AnchorBeyondHead, "anchored at %s, the log's head is seq %d", stampAnchor(g.cp.Time), headSeq)
		case !ok:
			bad(g.cp.Seq, g.name, AnchorMissingEntry, "anchored at %s", stampAnchor(g.cp.Time))
		case !bytes.Equal(h, g.cp.Hash):
			bad(g.cp.Seq, g.name, AnchorMismatch, "anchored %x at %s, the log holds %x", g.cp.Hash, stampAnchor(g.cp.Time), h)
		default:
			matched = append(matched, g.cp.Seq)
		}
	}
	for _, s := range matched {
		if (rep.OK() || s < rep.FirstBadSeq) && s > rep.LastGoodSeq {
			rep.LastGoodSeq = s
		}
	}
	if !rep.OK() {
		rep.Explanation += fmt.Sprintf("; the log matches its anchors up to seq %d", rep.LastGoodSeq)
	}
	return rep, nil
}

// seqOfName reads the seq out of an anchor file name (0 if it has none),
// to place an unreadable file in seq order.
func seqOfName(name string) int64 {
	n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, anchorPrefix), anchorSuffix), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func stampAnchor(t time.Time) string { return t.UTC().Format(time.RFC3339) }
