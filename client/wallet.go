package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
)

// The electronic wallet lives on the USB key, in a private data object
// (readable only after the PIN) of application "gridpay", label "wallet":
// JSON holding the wallet state GridPay signed after the last load (the
// protocol.WalletState encoding, GridPay's signature over it and the
// signer's certificate chain), what was moved to the meter card since
// (spent), the last load attempt and a card transfer in progress. The
// balance is the signed state's balance less what was spent; a wallet
// that never took a load holds nothing (sequence 0). Nobody can raise the
// balance without GridPay's signature: the client verifies it, up to
// GridPay's root, every time it reads the wallet.
//
// SoftHSM2 and ordinary USB keys are no secure element: whoever holds the
// key and its PIN can write any object, for instance an older wallet back
// (a rollback). GridPay notices at the key's next load: the wallet it
// reports must be the one GridPay last signed for it, with no higher
// balance, or the load is refused and audited.
const (
	walletApplication = "gridpay" // CKA_APPLICATION of every GridPay object on the key
	walletLabel       = "wallet"
	walletFormat      = 1
)

// Outcomes of a load attempt, as the key records them.
const (
	attemptSent      = "sent"      // the request was sent; no allow applied yet
	attemptApplied   = "applied"   // the allow was applied to the wallet
	attemptAbandoned = "abandoned" // the key refused the allow, or gave up: it will never apply it
	attemptRefused   = "refused"   // the gateway refused the request: nothing happened
)

// keyObjects is the part of a token the wallet and the card use: its data
// objects. *hsm.Token is one.
type keyObjects interface {
	ReadData(ctx context.Context, application, label string) (hsm.DataObject, error)
	WriteData(ctx context.Context, obj hsm.DataObject) error
	ReplaceData(ctx context.Context, application, label string, value []byte) error
}

var _ keyObjects = (*hsm.Token)(nil)

// openKeyObjects opens the data objects of the unlocked USB key: a second
// session of the same module in this process, which shares the login
// (PKCS#11 keeps one login per application and token), so private objects
// are reachable. Tests replace it with objects in memory.
var openKeyObjects = func(a *app, k *unlockedKey) (keyObjects, func() error, error) {
	mod, err := hsm.OpenModule(a.cfg.Token.Module)
	if err != nil {
		return nil, nil, fmt.Errorf("opening the USB key's objects: %w", err)
	}
	defer mod.Close()
	tok, err := mod.OpenToken(hsm.Selector{Serial: k.TokenSerial}, nil, hsm.Options{NoLogin: true, PoolSize: 1, Logger: a.log})
	if err != nil {
		return nil, nil, fmt.Errorf("opening the USB key's objects: %w", err)
	}
	return tok, tok.Close, nil
}

// readObject reads a data object, found false when there is none.
func readObject(ctx context.Context, o keyObjects, label string) ([]byte, bool, error) {
	obj, err := o.ReadData(ctx, walletApplication, label)
	if errors.Is(err, hsm.ErrObjectNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return obj.Value, true, nil
}

// writeObject replaces a data object, creating it (private or not) if it
// is missing. ReplaceData is atomic: readers see the old value or the new.
func writeObject(ctx context.Context, o keyObjects, label string, private bool, value []byte) error {
	err := o.ReplaceData(ctx, walletApplication, label, value)
	if !errors.Is(err, hsm.ErrObjectNotFound) {
		return err
	}
	err = o.WriteData(ctx, hsm.DataObject{Application: walletApplication, Label: label, Value: value, Private: private})
	if errors.Is(err, hsm.ErrObjectExists) {
		return o.ReplaceData(ctx, walletApplication, label, value)
	}
	return err
}

// walletRecord is the wallet object's content.
type walletRecord struct {
	Version     int    `json:"v"`
	TokenSerial string `json:"token_serial"`
	// State is the encoded protocol.WalletState, StateSig GridPay's
	// signature over it, Chain the signer's certificate and the services
	// CA (DER).
	State    []byte   `json:"state,omitempty"`
	StateSig []byte   `json:"state_sig,omitempty"`
	Chain    [][]byte `json:"chain,omitempty"`
	// Spent is what went to the meter card since State was signed.
	Spent     money.Fen        `json:"spent"`
	Transfers int              `json:"transfers"`
	Attempt   *loadAttempt     `json:"attempt,omitempty"`
	Transfer  *pendingTransfer `json:"transfer,omitempty"`
}

// loadAttempt is the key's last load request.
type loadAttempt struct {
	Sequence uint64    `json:"sequence"`
	LoadID   string    `json:"load_id"`
	Amount   money.Fen `json:"amount"`
	Started  time.Time `json:"started"`
	Outcome  string    `json:"outcome"`
}

// wallet is the wallet object, verified.
type wallet struct {
	rec   walletRecord
	state *protocol.WalletState // nil: the key never took a load
}

// ErrWalletInvalid means the wallet object on the key does not verify.
var ErrWalletInvalid = errors.New("the wallet on the USB key does not verify")

// Sequence is the sequence of the last load the wallet took.
func (w wallet) Sequence() uint64 {
	if w.state == nil {
		return 0
	}
	return w.state.Sequence
}

// LastLoad is the ID of the last load the wallet took.
func (w wallet) LastLoad() string {
	if w.state == nil {
		return ""
	}
	return w.state.LastLoadID
}

// Balance is what the wallet holds: GridPay's signed balance less what
// went to the meter card.
func (w wallet) Balance() money.Fen {
	if w.state == nil {
		return 0
	}
	return w.state.Balance - w.rec.Spent
}

// Attempted is the highest sequence the key has asked with.
func (w wallet) Attempted() uint64 {
	n := w.Sequence()
	if w.rec.Attempt != nil {
		n = max(n, w.rec.Attempt.Sequence)
	}
	return n
}

// readWallet reads and verifies the key's wallet: GridPay's signature over
// the state with a load signer certificate that chains to the roots, at
// the time it was signed.
func readWallet(ctx context.Context, o keyObjects, roots *x509.CertPool, tokenSerial string) (wallet, error) {
	b, found, err := readObject(ctx, o, walletLabel)
	if err != nil {
		return wallet{}, fmt.Errorf("reading the wallet on the USB key: %w", err)
	}
	if !found {
		return wallet{rec: walletRecord{Version: walletFormat, TokenSerial: tokenSerial}}, nil
	}
	var w wallet
	if err := json.Unmarshal(b, &w.rec); err != nil {
		return wallet{}, fmt.Errorf("%w: %v", ErrWalletInvalid, err)
	}
	switch {
	case w.rec.Version != walletFormat:
		return wallet{}, fmt.Errorf("%w: format %d, this program reads %d", ErrWalletInvalid, w.rec.Version, walletFormat)
	case w.rec.TokenSerial != tokenSerial:
		return wallet{}, fmt.Errorf("%w: it is the wallet of key %s", ErrWalletInvalid, w.rec.TokenSerial)
	case w.rec.Spent < 0:
		return wallet{}, fmt.Errorf("%w: negative spending", ErrWalletInvalid)
	}
	if w.rec.State == nil {
		if w.rec.Spent != 0 || w.rec.Transfer != nil {
			return wallet{}, fmt.Errorf("%w: spending from a wallet that never took a load", ErrWalletInvalid)
		}
		return w, nil
	}
	st, err := protocol.DecodeWalletState(w.rec.State)
	if err != nil {
		return wallet{}, fmt.Errorf("%w: %v", ErrWalletInvalid, err)
	}
	signer, err := verifyLoadSigner(roots, w.rec.Chain, st.SignedAt)
	if err != nil {
		return wallet{}, fmt.Errorf("%w: %v", ErrWalletInvalid, err)
	}
	if _, err := protocol.VerifyWalletState(signer, w.rec.State, w.rec.StateSig); err != nil {
		return wallet{}, fmt.Errorf("%w: %v", ErrWalletInvalid, err)
	}
	switch {
	case st.TokenSerial != tokenSerial:
		return wallet{}, fmt.Errorf("%w: GridPay signed it for key %s", ErrWalletInvalid, st.TokenSerial)
	case w.rec.Spent > st.Balance:
		return wallet{}, fmt.Errorf("%w: more spent than GridPay loaded", ErrWalletInvalid)
	}
	w.state = &st
	return w, nil
}

// writeWallet stores the wallet record on the key.
func writeWallet(ctx context.Context, o keyObjects, rec walletRecord) error {
	rec.Version = walletFormat
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := writeObject(ctx, o, walletLabel, true, b); err != nil {
		return fmt.Errorf("writing the wallet on the USB key: %w", err)
	}
	return nil
}

// verifyLoadSigner checks a load signer's chain (DER, signer first) up to
// GridPay's roots at a time, and that the signer is GridPay's load
// service, and returns the signer's certificate.
func verifyLoadSigner(roots *x509.CertPool, chain [][]byte, at time.Time) (*x509.Certificate, error) {
	if len(chain) == 0 || len(chain) > 4 {
		return nil, fmt.Errorf("a load signer's chain has 1 to 4 certificates, not %d", len(chain))
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of the load signer's chain: %w", i+1, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("the load signer's certificate does not chain to GridPay's root: %w", err)
	}
	id, err := pki.IdentityOf(certs[0])
	if err != nil {
		return nil, err
	}
	if id.Kind != pki.KindService || id.Service != loadService {
		return nil, fmt.Errorf("the signer is %s, not GridPay's load service", id)
	}
	return certs[0], nil
}

// checkSignerRevocation checks that neither the load signer's certificate
// nor its CA is revoked, by GridPay's CRLs as the gateway hands them out
// (each checked against the roots in ca_file, so a gateway cannot forge
// one). CRLs missing or past their next update fail closed: an allow
// that cannot be checked is refused, and GridPay refunds it.
func checkSignerRevocation(roots []*x509.Certificate, chain [][]byte, crls [][]byte, now time.Time) error {
	if len(chain) < 2 {
		return errors.New("the load signer's chain lacks its CA")
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("certificate %d of the load signer's chain: %w", i+1, err)
		}
		certs[i] = c
	}
	// Only the CRLs of the CAs in question: the roots' (covering the
	// services CA) and the signer's CA's.
	issuers := append(slices.Clone(roots), certs[1:]...)
	var mine [][]byte
	for _, der := range crls {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return fmt.Errorf("a revocation list from the gateway does not parse: %w", err)
		}
		if slices.ContainsFunc(issuers, func(c *x509.Certificate) bool { return bytes.Equal(c.RawSubject, crl.RawIssuer) }) {
			mine = append(mine, der)
		}
	}
	v, err := pki.NewVerifier(pki.VerifierConfig{Roots: roots, Intermediates: certs[1:], CRLs: mine, NoChainCache: true})
	if err != nil {
		return fmt.Errorf("checking the load signer for revocation: %w", err)
	}
	if _, err := v.Verify(certs, now, x509.ExtKeyUsageClientAuth); err != nil {
		return fmt.Errorf("the load signer's certificate: %w", err)
	}
	return nil
}

// loadService is the service name of GridPay's load signer certificate.
const loadService = "load"

// walletLock keeps two client processes from loading or transferring on
// one key at once: a lock file per key in the state directory.
func (a *app) lockWallet(serial string) (func(), error) {
	path := filepath.Join(a.local.Dir(), "wallet-"+fileSerial(serial)+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fail(cli.ExitConflict, err, "another GridPay client is using the wallet of this USB key; wait until it has finished")
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

var plainFileSerial = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// fileSerial makes a token serial safe in a file name.
func fileSerial(serial string) string {
	if plainFileSerial.MatchString(serial) && serial != "." && serial != ".." {
		return serial
	}
	return hex.EncodeToString([]byte(serial))
}

// walletReport builds and signs the key's report: a state report (kind
// ReportState), or a receipt or error report on the attempt.
func walletReport(s *session, w wallet, kind protocol.ReportKind, loadSeq uint64, code protocol.ErrorCode, text string, now time.Time) (api.LoadReport, error) {
	alg, err := protocol.AlgorithmFor(s.key.Signer.Public())
	if err != nil {
		return api.LoadReport{}, err
	}
	r := protocol.LoadReport{
		LoadHeader: protocol.LoadHeader{Version: protocol.LoadProtocolVersion, Type: protocol.TypeLoadReport, TokenSerial: s.key.TokenSerial,
			CertSerial: pki.SerialHex(s.key.Leaf.SerialNumber), KeyVersion: protocol.KeyVersion, Algorithm: alg,
			Nonce: protocol.NewNonce(protocol.MinNonceSize), Timestamp: now.UTC().Truncate(time.Second), Sequence: w.Sequence()},
		Kind: kind, WalletBalance: w.Balance(), Attempt: w.Attempted(), State: w.rec.State,
	}
	if kind != protocol.ReportState {
		r.LoadSequence, r.LoadID = loadSeq, protocol.LoadID(s.key.TokenSerial, loadSeq)
	}
	if kind == protocol.ReportError {
		r.ErrorCode, r.ErrorText = code, protocol.TrimError(text)
	}
	enc, err := protocol.EncodeLoadReport(r)
	if err != nil {
		return api.LoadReport{}, err
	}
	sig, err := protocol.Sign(s.key.Signer, alg, protocol.LoadReportDigest(enc))
	if err != nil {
		return api.LoadReport{}, fmt.Errorf("the USB key could not sign the report: %w", err)
	}
	return api.LoadReport{Report: enc, Signature: sig}, nil
}

// reportWallet sends the key's signed wallet state to the gateway, so
// that a load waiting for this key is settled (every session of the load
// commands starts with it). It updates the attempt's outcome on the key
// when the gateway says the load is settled.
func (a *app) reportWallet(ctx context.Context, s *session, o keyObjects, w *wallet) (api.LoadReportAnswer, error) {
	rep, err := walletReport(s, *w, protocol.ReportState, 0, 0, "", a.now())
	if err != nil {
		return api.LoadReportAnswer{}, err
	}
	var ans api.LoadReportAnswer
	if err := s.gw.post(ctx, api.PathLoadReports, rep, &ans); err != nil {
		return api.LoadReportAnswer{}, err
	}
	for _, l := range ans.Loads {
		if at := w.rec.Attempt; at != nil && l.Sequence == at.Sequence && l.Final && unsettled(at.Outcome) {
			at.Outcome = l.Status
			if err := writeWallet(ctx, o, w.rec); err != nil {
				a.warn("%v", err)
			}
		}
	}
	if c := ans.Confirmed; c != nil && c.Sequence > w.Sequence() {
		a.warn("the wallet on this USB key is behind GridPay's records (GridPay's last load onto it is %d, the key is at %d): please contact the power company", c.Sequence, w.Sequence())
	}
	return ans, nil
}

// unsettled reports whether GridPay may still be waiting for the key's word
// about a load attempt.
func unsettled(outcome string) bool {
	return outcome == attemptSent || outcome == attemptAbandoned || outcome == attemptApplied
}

// settleOpenLoad is the patent's "next contact": when the key's last load
// may still be waiting for it (its receipt or allow was lost), every session
// of the key tells GridPay the key's signed wallet state, which settles the
// load (the sequence advanced: confirmed; not: refunded). Sessions with
// nothing open cost nothing. Failures only warn: the next session tries
// again.
func (a *app) settleOpenLoad(ctx context.Context, s *session) {
	o, closeObjs, err := openKeyObjects(a, s.key)
	if err != nil {
		return
	}
	defer closeObjs()
	roots, err := loadRoots(a.cfg.CAFile)
	if err != nil {
		return
	}
	w, err := readWallet(ctx, o, roots, s.key.TokenSerial)
	if err != nil || w.rec.Attempt == nil || !unsettled(w.rec.Attempt.Outcome) {
		return
	}
	unlock, err := a.lockWallet(s.key.TokenSerial)
	if err != nil {
		return // another client works on this wallet and will report it
	}
	defer unlock()
	if _, err := a.reportWallet(ctx, s, o, &w); err != nil {
		a.warn("the wallet's state could not be sent to the gateway (%v); it will be at the next login", err)
	}
}

// ---- the local log ----

// walletLogEntry is one line of the local log of a key's wallet: loads and
// card transfers, each hashed together with the previous line's hash and
// signed by the USB key, so that an edited, removed or inserted line shows.
type walletLogEntry struct {
	N        int       `json:"n"`
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"` // load, load-refused, card-transfer, card-transfer-undone
	LoadID   string    `json:"load_id,omitempty"`
	Sequence uint64    `json:"sequence,omitempty"`
	Amount   money.Fen `json:"amount"`
	Balance  money.Fen `json:"balance"` // the wallet's balance after
	Card     string    `json:"card,omitempty"`
	Note     string    `json:"note,omitempty"`
	Prev     string    `json:"prev"`
	Hash     string    `json:"hash"`
	Sig      []byte    `json:"sig"`
}

// Kinds of log entry.
const (
	logLoad           = "load"
	logLoadRefused    = "load-refused"
	logTransfer       = "card-transfer"
	logTransferUndone = "card-transfer-undone"
)

func (a *app) walletLogPath(serial string) string {
	return filepath.Join(a.local.Dir(), "wallet-"+fileSerial(serial)+".log")
}

// hashOf is SHA-256 of the domain and the entry without its hash and
// signature.
func (e walletLogEntry) hashOf() string {
	e.Hash, e.Sig = "", nil
	b, _ := json.Marshal(e)
	sum := sha256.Sum256(append([]byte("GridPay wallet log v1\x00"), b...))
	return hex.EncodeToString(sum[:])
}

// appendWalletLog adds an entry, chained and signed by the key. A failure
// is reported, never fatal: the wallet on the key is what counts.
func (a *app) appendWalletLog(s *session, e walletLogEntry) {
	if err := a.appendWalletLogErr(s, e); err != nil {
		a.warn("the local wallet log was not written: %v", err)
	}
}

func (a *app) appendWalletLogErr(s *session, e walletLogEntry) error {
	path := a.walletLogPath(s.key.TokenSerial)
	entries, _, _ := readWalletLog(path, nil)
	e.N, e.Prev = 1, strings.Repeat("0", 64)
	if n := len(entries); n > 0 {
		e.N, e.Prev = entries[n-1].N+1, entries[n-1].Hash
	}
	e.At = e.At.UTC()
	e.Hash = e.hashOf()
	digest, _ := hex.DecodeString(e.Hash)
	alg, err := protocol.AlgorithmFor(s.key.Signer.Public())
	if err != nil {
		return err
	}
	if e.Sig, err = protocol.Sign(s.key.Signer, alg, digest); err != nil {
		return fmt.Errorf("the USB key could not sign the log entry: %w", err)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readWalletLog reads the log and, given the key's certificate, checks the
// chain and every signature: ok false and the first problem otherwise.
func readWalletLog(path string, cert *x509.Certificate) (entries []walletLogEntry, ok bool, problem string) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, true, ""
	}
	if err != nil {
		return nil, false, err.Error()
	}
	prev := strings.Repeat("0", 64)
	ok = true
	for i, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e walletLogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return entries, false, fmt.Sprintf("line %d does not parse", i+1)
		}
		entries = append(entries, e)
		if !ok || cert == nil {
			continue
		}
		switch {
		case e.Prev != prev || e.N != len(entries):
			ok, problem = false, fmt.Sprintf("entry %d does not follow entry %d (removed or inserted lines)", e.N, len(entries)-1)
		case e.hashOf() != e.Hash:
			ok, problem = false, fmt.Sprintf("entry %d was edited", e.N)
		default:
			digest, _ := hex.DecodeString(e.Hash)
			if protocol.VerifyDigest(cert, digest, e.Sig) != nil {
				ok, problem = false, fmt.Sprintf("entry %d is not signed by this USB key", e.N)
			}
		}
		prev = e.Hash
	}
	return entries, ok, problem
}

// ---- client wallet ----

// walletView is what "client wallet" shows.
type walletView struct {
	TokenSerial string     `json:"token_serial"`
	Balance     money.Fen  `json:"balance"`
	Sequence    uint64     `json:"sequence"`
	LastLoad    string     `json:"last_load,omitempty"`
	SignedAt    *time.Time `json:"signed_at,omitempty"`
	// SpentToCard is what went to the meter card since the last load.
	SpentToCard money.Fen        `json:"spent_to_card"`
	Attempt     *loadAttempt     `json:"attempt,omitempty"`
	Transfer    *pendingTransfer `json:"pending_transfer,omitempty"`
	Card        string           `json:"card,omitempty"` // masked number of the bound meter card
	// Loads are the loads of this key GridPay settled or is settling, as
	// the gateway answered the wallet's report; Confirmed is the wallet
	// GridPay last confirmed.
	Loads     []api.LoadStatus  `json:"loads,omitempty"`
	Confirmed *api.WalletRecord `json:"confirmed,omitempty"`
	Offline   bool              `json:"offline,omitempty"`
	Recent    []walletLogEntry  `json:"recent"`
	LogOK     bool              `json:"log_verified"`
	LogIssue  string            `json:"log_problem,omitempty"`
}

func (a *app) walletCommand() *cobra.Command {
	var offline bool
	var recent int
	cmd := &cobra.Command{
		Use:   "wallet",
		Short: "Show the electronic wallet on the USB key: balance, sequence number and recent loads",
		Long: `wallet reads the electronic wallet on your USB key (after the PIN), checks GridPay's
signature over it, and shows its balance, the sequence number of the last load and
the recent loads and card transfers from this computer's signed log.

Unless --offline, it first sends the wallet's signed state to the gateway: a load
whose confirmation never arrived is settled by it (credited if the key took it,
refunded to your prepaid account if not).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				v, err := a.walletOf(ctx, s, offline, recent)
				if err != nil {
					return err
				}
				return a.out.Print(v, func(w io.Writer) { renderWallet(w, v) })
			})
		},
	}
	cmd.Flags().BoolVar(&offline, "offline", false, "read the key only; do not send the wallet's state to the gateway")
	cmd.Flags().IntVar(&recent, "recent", 10, "how many log entries to show")
	return cmd
}

// walletOf reads and verifies the wallet on the key and, unless offline,
// sends its signed state to the gateway (settling a load left open), with
// the last recent entries of the local log.
func (a *app) walletOf(ctx context.Context, s *session, offline bool, recent int) (walletView, error) {
	o, closeObjs, err := openKeyObjects(a, s.key)
	if err != nil {
		return walletView{}, fail(cli.ExitUnavailable, err, "%v", err)
	}
	defer closeObjs()
	roots, err := loadRoots(a.cfg.CAFile)
	if err != nil {
		return walletView{}, err
	}
	w, err := readWallet(ctx, o, roots, s.key.TokenSerial)
	if err != nil {
		return walletView{}, fail(cli.ExitAuth, err, "%v; please contact the power company", err)
	}
	v := walletView{TokenSerial: s.key.TokenSerial, Offline: offline}
	if !offline {
		ans, err := a.reportWallet(ctx, s, o, &w)
		if err != nil {
			a.warn("the wallet's state could not be sent to the gateway (%v); showing the key only", err)
			v.Offline = true
		}
		v.Loads, v.Confirmed = ans.Loads, ans.Confirmed
	}
	v.Balance, v.Sequence, v.LastLoad, v.SpentToCard = w.Balance(), w.Sequence(), w.LastLoad(), w.rec.Spent
	if w.state != nil {
		at := w.state.SignedAt
		v.SignedAt = &at
	}
	v.Attempt, v.Transfer = w.rec.Attempt, w.rec.Transfer
	if b, found, err := readCardBinding(ctx, o); err == nil && found {
		v.Card = maskCard(b.CardNumber)
	}
	entries, ok, problem := readWalletLog(a.walletLogPath(s.key.TokenSerial), s.key.Leaf)
	v.LogOK, v.LogIssue = ok, problem
	if n := len(entries); n > recent {
		entries = entries[n-recent:]
	}
	v.Recent = append([]walletLogEntry{}, entries...)
	if !ok {
		a.warn("the local wallet log %s does not verify: %s", a.walletLogPath(s.key.TokenSerial), problem)
	}
	return v, nil
}

func renderWallet(w io.Writer, v walletView) {
	fmt.Fprintf(w, "Wallet of USB key %s\n", v.TokenSerial)
	fmt.Fprintf(w, "  balance    %s\n", v.Balance.Display())
	seq := fmt.Sprint(v.Sequence)
	if v.LastLoad != "" {
		seq += " (" + v.LastLoad + ")"
	}
	fmt.Fprintf(w, "  sequence   %s\n", seq)
	if v.SignedAt != nil {
		fmt.Fprintf(w, "  signed     %s by GridPay\n", v.SignedAt.In(platform.Shanghai).Format("2006-01-02 15:04:05"))
	}
	if v.SpentToCard > 0 {
		fmt.Fprintf(w, "  to card    %s since the last load\n", v.SpentToCard.Display())
	}
	if v.Card != "" {
		fmt.Fprintf(w, "  card       %s\n", v.Card)
	}
	if t := v.Transfer; t != nil {
		fmt.Fprintf(w, "  pending    %s to the meter card (finished at the next card transfer)\n", t.Amount.Display())
	}
	for _, l := range v.Loads {
		line := fmt.Sprintf("  load %d    %s: %s", l.Sequence, l.Amount.Display(), strings.ReplaceAll(l.Status, "-", " "))
		if l.Reason != "" {
			line += " (" + l.Reason + ")"
		}
		fmt.Fprintln(w, line)
	}
	if v.Offline {
		fmt.Fprintln(w, "  (not checked with GridPay)")
	}
	if len(v.Recent) > 0 {
		fmt.Fprintln(w, "\nRecent:")
		t := newTable("WHEN", "WHAT", "AMOUNT", "BALANCE")
		for _, e := range v.Recent {
			what := e.Kind
			if e.LoadID != "" {
				what += " " + e.LoadID
			}
			if e.Card != "" {
				what += " " + e.Card
			}
			t.add(e.At.In(platform.Shanghai).Format("2006-01-02 15:04"), what, e.Amount.Display(), e.Balance.Display())
		}
		t.write(w)
	}
	if !v.LogOK {
		fmt.Fprintf(w, "\nwarning: the local log does not verify: %s\n", v.LogIssue)
	}
}

// randomID returns n random bytes in hex.
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}
