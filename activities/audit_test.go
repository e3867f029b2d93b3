package activities

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// fakeAuditLog is the audit log's head, and the entries appended.
type fakeAuditLog struct {
	head   store.AuditHead
	err    error
	audits []store.AuditRecord
}

func (f *fakeAuditLog) Head(context.Context) (store.AuditHead, error) { return f.head, f.err }

func (f *fakeAuditLog) Audit(_ context.Context, rec store.AuditRecord) error {
	f.audits = append(f.audits, rec)
	return nil
}

// countingSigner counts signatures.
type countingSigner struct {
	crypto.Signer
	n int
}

func (c *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c.n++
	return c.Signer.Sign(r, digest, opts)
}

// auditPKI is a root, its services CA with current CRLs, and signers of
// service "audit" and "load".
type auditPKI struct {
	verifier *pki.Verifier
	audit    *ServiceKey
	load     *ServiceKey
	counter  *countingSigner
}

func newAuditPKI(t *testing.T) *auditPKI {
	t.Helper()
	t0 := time.Now().Add(-time.Hour)
	rk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rc, err := pki.NewRoot(rk, pki.RootOptions{CommonName: "Test Root CA", Organization: "GridPay Test", Country: "CN", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	root, err := pki.NewCA(rc, rk)
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sc, err := pki.NewIssuing(root, sk.Public(), pki.IssuingOptions{CommonName: "Test Services CA", Role: pki.RoleServices, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	services, err := pki.NewCA(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	keys := &memKeys{signers: map[string]crypto.Signer{}, certs: map[string]*x509.Certificate{}}
	var counter *countingSigner
	for _, name := range []string{"audit", "load"} {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		c, err := services.IssueService(k.Public(), pki.ServiceRequest{Name: name, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		var s crypto.Signer = k
		if name == "audit" {
			counter = &countingSigner{Signer: k}
			s = counter
		}
		keys.signers[name], keys.certs[name] = s, c
	}
	var crls [][]byte
	for i, ca := range []*pki.CA{root, services} {
		crl, err := ca.CRL(pki.CRLRequest{Number: big.NewInt(int64(i + 1)), ThisUpdate: t0, NextUpdate: t0.Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		crls = append(crls, crl)
	}
	v, err := pki.NewVerifier(pki.VerifierConfig{Roots: []*x509.Certificate{rc}, Intermediates: []*x509.Certificate{sc}, CRLs: crls})
	if err != nil {
		t.Fatal(err)
	}
	return &auditPKI{verifier: v, counter: counter,
		audit: &ServiceKey{Keys: keys, Label: "audit", Intermediates: []*x509.Certificate{sc}, Service: AuditSignerService},
		load:  &ServiceKey{Keys: keys, Label: "load", Intermediates: []*x509.Certificate{sc}}}
}

func entryHash(seq int64) []byte {
	h := sha256.Sum256([]byte{byte(seq), 'x'})
	return h[:]
}

type anchorFixture struct {
	a   *AuditAnchors
	log *fakeAuditLog
	pki *auditPKI
	env *testsuite.TestActivityEnvironment
}

func newAnchorFixture(t *testing.T, dir string) *anchorFixture {
	p := newAuditPKI(t)
	log := &fakeAuditLog{head: store.AuditHead{Seq: 7, Hash: entryHash(7)}}
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	a := &AuditAnchors{Log: log, Signer: p.audit, Dir: dir}
	env.RegisterActivity(a)
	return &anchorFixture{a: a, log: log, pki: p, env: env}
}

func (f *anchorFixture) anchor(t *testing.T) (AnchorResult, error) {
	t.Helper()
	v, err := f.env.ExecuteActivity(f.a.AnchorAudit)
	if err != nil {
		return AnchorResult{}, err
	}
	var res AnchorResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res, nil
}

// An anchor is signed by the audit key, written once, and verifies; the
// same head is not anchored again, a new head is.
func TestAnchorAuditSignsAndWritesOnce(t *testing.T) {
	dir := t.TempDir()
	f := newAnchorFixture(t, dir)
	res, err := f.anchor(t)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "audit-anchor-00000000000000000007.json")
	if res.File != path || res.Seq != 7 || res.Reused || f.pki.counter.n != 1 {
		t.Fatalf("result %+v, %d signatures", res, f.pki.counter.n)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	files, err := ReadAnchorDir(dir)
	if err != nil || len(files) != 1 || files[0].Err != nil {
		t.Fatalf("ReadAnchorDir: %+v, %v", files, err)
	}
	cp, err := VerifyAnchor(files[0].Anchor, f.pki.verifier)
	if err != nil {
		t.Fatalf("the anchor file does not verify: %v", err)
	}
	if cp.Seq != 7 || !bytes.Equal(cp.Hash, entryHash(7)) || !cp.Time.Equal(res.Time) || cp.Signer != res.Signer {
		t.Fatalf("checkpoint %+v, result %+v", cp, res)
	}
	if _, err := VerifyAnchor(res.Anchor, f.pki.verifier); err != nil {
		t.Fatalf("the anchor returned to Temporal does not verify: %v", err)
	}

	// The head did not move (or the activity is retried): the file stands.
	again, err := f.anchor(t)
	if err != nil || !again.Reused || again.File != path || !again.Time.Equal(res.Time) || f.pki.counter.n != 1 {
		t.Fatalf("second run: %+v, %v, %d signatures", again, err, f.pki.counter.n)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, raw) {
		t.Fatal("the anchor file was rewritten")
	}

	f.log.head = store.AuditHead{Seq: 9, Hash: entryHash(9)}
	if res, err := f.anchor(t); err != nil || res.Seq != 9 || res.Reused {
		t.Fatalf("new head: %+v, %v", res, err)
	}
	if files, _ := ReadAnchorDir(dir); len(files) != 2 || files[1].Name != AnchorFileName(9) {
		t.Fatalf("files: %+v", files)
	}
	if len(f.log.audits) != 0 {
		t.Fatalf("audited %+v", f.log.audits)
	}
}

// The same seq anchored with another hash is the alarm: audited, and the
// activity fails for good; the file is left as it was.
func TestAnchorAuditConflict(t *testing.T) {
	dir := t.TempDir()
	f := newAnchorFixture(t, dir)
	if _, err := f.anchor(t); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, AnchorFileName(7))
	before, _ := os.ReadFile(path)

	f.log.head = store.AuditHead{Seq: 7, Hash: entryHash(70)} // rewritten
	_, err := f.anchor(t)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != ErrTypeAnchorConflict || !app.NonRetryable() || !strings.Contains(app.Message(), "seq 7") {
		t.Fatalf("conflict: %v", err)
	}
	if len(f.log.audits) != 1 || f.log.audits[0].Action != "audit.anchor_conflict" || f.log.audits[0].Subject != "7" ||
		f.log.audits[0].Outcome != store.OutcomeError {
		t.Fatalf("audited %+v", f.log.audits)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Fatal("the conflicting anchor file was rewritten")
	}

	// A file that does not parse is no anchor to trust either.
	f.log.head = store.AuditHead{Seq: 8, Hash: entryHash(8)}
	if err := os.WriteFile(filepath.Join(dir, AnchorFileName(8)), []byte("{"), 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := f.anchor(t); !errors.As(err, &app) || app.Type() != ErrTypeAnchorConflict {
		t.Fatalf("garbled file: %v", err)
	}
}

func TestAnchorAuditWithoutDirAndFailures(t *testing.T) {
	f := newAnchorFixture(t, "")
	res, err := f.anchor(t)
	if err != nil || res.File != "" || res.Seq != 7 {
		t.Fatalf("without a directory: %+v, %v", res, err)
	}
	if _, err := VerifyAnchor(res.Anchor, f.pki.verifier); err != nil {
		t.Fatal(err)
	}

	var app *temporal.ApplicationError
	f.log.err = &store.AuditTamperedError{Report: store.AuditReport{FirstBadSeq: 7, Problem: store.AuditHeadMismatch}}
	if _, err := f.anchor(t); !errors.As(err, &app) || app.Type() != ErrTypeAuditTampered || !app.NonRetryable() {
		t.Fatalf("tampered head: %v", err)
	}

	f.log.err = nil
	f.a.Signer = &ServiceKey{Keys: &memKeys{}, Label: "gridpay-audit-signer", Service: AuditSignerService}
	if _, err := f.anchor(t); !errors.As(err, &app) || app.Type() != ErrTypeAuditSignerUnavailable || app.NonRetryable() ||
		!strings.Contains(app.Message(), "adminctl ca issue --name audit --key-label gridpay-audit-signer") {
		t.Fatalf("no signer: %v", err)
	}
	// A key whose certificate is of another service does not sign anchors.
	f.a.Signer = &ServiceKey{Keys: f.pki.load.Keys, Label: "load", Intermediates: f.pki.load.Intermediates, Service: AuditSignerService}
	if _, err := f.anchor(t); !errors.As(err, &app) || app.Type() != ErrTypeAuditSignerUnavailable {
		t.Fatalf("load key: %v", err)
	}
}

// signAnchor makes an anchor of (seq, hash) with signer, bypassing the
// activity.
func signAnchor(t *testing.T, signer *ServiceKey, seq int64, hash []byte, at time.Time) Anchor {
	t.Helper()
	key, chain, err := signer.LoadSigner(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncodeCheckpoint(Checkpoint{Version: AnchorVersion, Seq: seq, Hash: hash, Time: at, Signer: pki.SerialHex(chain[0].SerialNumber)})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := key.Sign(rand.Reader, CheckpointDigest(enc), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	a := Anchor{Checkpoint: enc, Signature: sig}
	for _, c := range chain {
		a.Chain = append(a.Chain, c.Raw)
	}
	return a
}

func TestCheckpointEncoding(t *testing.T) {
	at := time.Date(2026, 3, 1, 8, 0, 0, 123456000, time.UTC)
	enc, err := EncodeCheckpoint(Checkpoint{Version: 1, Seq: 42, Hash: bytes.Repeat([]byte{0xab}, 32), Time: at, Signer: "1f"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"seq":42,"hash":"` + strings.Repeat("ab", 32) + `","time":"2026-03-01T08:00:00.123456Z","signer":"1f"}`
	if string(enc) != want {
		t.Fatalf("encoding\n got %s\nwant %s", enc, want)
	}
	if cp, err := DecodeCheckpoint(enc); err != nil || cp.Seq != 42 || !cp.Time.Equal(at) {
		t.Fatalf("decode: %+v, %v", cp, err)
	}
	for _, bad := range []string{
		strings.Replace(want, `"seq":42`, `"seq": 42`, 1),                        // whitespace
		strings.Replace(want, `"version":1,"seq":42`, `"seq":42,"version":1`, 1), // order
		strings.Replace(want, `}`, `,"extra":1}`, 1),
		strings.Replace(want, "ab", "AB", 1),
		strings.Replace(want, `.123456Z`, `.123456+00:00`, 1),
	} {
		if _, err := DecodeCheckpoint([]byte(bad)); err == nil {
			t.Errorf("accepted non-canonical %s", bad)
		}
	}
}

func TestCheckAnchors(t *testing.T) {
	p := newAuditPKI(t)
	at := time.Now().Add(-time.Minute).UTC()
	files := func(anchors ...Anchor) []AnchorFile {
		var out []AnchorFile
		for _, a := range anchors {
			cp, _ := DecodeCheckpoint(a.Checkpoint)
			out = append(out, AnchorFile{Name: AnchorFileName(cp.Seq), Anchor: a})
		}
		return out
	}
	good := files(signAnchor(t, p.audit, 3, entryHash(3), at), signAnchor(t, p.audit, 5, entryHash(5), at), signAnchor(t, p.audit, 8, entryHash(8), at))
	log := map[int64][]byte{}
	for s := int64(1); s <= 10; s++ {
		log[s] = entryHash(s)
	}
	lookup := func(l map[int64][]byte) AuditHashLookup {
		return func(_ context.Context, seqs []int64) (map[int64][]byte, error) {
			out := map[int64][]byte{}
			for _, s := range seqs {
				if h, ok := l[s]; ok {
					out[s] = h
				}
			}
			return out, nil
		}
	}
	ctx := context.Background()
	rep, err := CheckAnchors(ctx, "dir", good, p.verifier, lookup(log), 10)
	if err != nil || !rep.OK() || rep.Checked != 3 || rep.NewestSeq != 8 || rep.LastGoodSeq != 8 || !rep.NewestTime.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("intact log: %+v, %v", rep, err)
	}

	// Seqs 4..10 rewritten consistently: the anchor at 5 no longer matches.
	rewritten := map[int64][]byte{}
	for s, h := range log {
		rewritten[s] = h
		if s >= 4 {
			rewritten[s] = entryHash(s + 100)
		}
	}
	rep, _ = CheckAnchors(ctx, "dir", good, p.verifier, lookup(rewritten), 10)
	if rep.OK() || rep.FirstBadSeq != 5 || rep.Problem != AnchorMismatch || rep.LastGoodSeq != 3 || rep.FirstBadName != AnchorFileName(5) {
		t.Fatalf("rewritten log: %+v", rep)
	}
	// The tail from 7 removed and the head moved back to 6.
	rep, _ = CheckAnchors(ctx, "dir", good, p.verifier, lookup(log), 6)
	if rep.OK() || rep.FirstBadSeq != 8 || rep.Problem != AnchorBeyondHead || rep.LastGoodSeq != 5 {
		t.Fatalf("truncated log: %+v", rep)
	}

	forged := signAnchor(t, p.audit, 5, entryHash(5), at)
	forged.Signature[len(forged.Signature)-1] ^= 1
	byLoad := signAnchor(t, p.load, 3, entryHash(3), at)
	misnamed := files(signAnchor(t, p.audit, 4, entryHash(4), at))
	misnamed[0].Name = AnchorFileName(6)
	for name, tt := range map[string]struct {
		files   []AnchorFile
		seq     int64
		problem AnchorProblem
		why     string
	}{
		"bad signature":   {files(forged), 5, AnchorBadSignature, "signature"},
		"another service": {files(byLoad), 3, AnchorBadSignature, `not service "audit"`},
		"misnamed":        {misnamed, 4, AnchorMisnamed, "anchors seq 4"},
		"unreadable":      {[]AnchorFile{{Name: AnchorFileName(2), Err: errors.New("truncated")}}, 2, AnchorUnreadable, "truncated"},
	} {
		rep, err := CheckAnchors(ctx, "dir", append(tt.files, good...), p.verifier, lookup(log), 10)
		if err != nil || rep.OK() || rep.FirstBadSeq != tt.seq || rep.Problem != tt.problem || !strings.Contains(rep.Explanation, tt.why) {
			t.Errorf("%s: %+v, %v", name, rep, err)
		}
	}
}
