package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/protocol"
)

// maxAllowSkew is how far the allow's host time may be from this
// computer's clock: the key judges the allow's expiry by this clock, so a
// clock set back must not let a stale allow through.
const maxAllowSkew = 5 * time.Minute

// loadFaultEnv names test faults the client injects into its own side of
// the exchange (end-to-end tests of GridPay's reaction to a broken or
// malicious client): a comma-separated list of tamper-request,
// tamper-allow, late-allow, tamper-receipt, drop-receipt, drop-allow. It only ever
// makes this client misbehave towards GridPay, which must cope anyway.
const loadFaultEnv = "GRIDPAY_TEST_LOAD_FAULT"

func loadFault(name string) bool {
	return slices.Contains(strings.Split(os.Getenv(loadFaultEnv), ","), name)
}

// confirmInput is where confirmations are read from, and whether it is a
// terminal. Tests replace it.
var confirmInput = func() (io.Reader, bool) { return os.Stdin, term.IsTerminal(int(os.Stdin.Fd())) }

// loadResult is what "client load" prints.
type loadResult struct {
	LoadID     string     `json:"load_id"`
	Sequence   uint64     `json:"sequence"`
	Amount     money.Fen  `json:"amount"`
	Status     string     `json:"status"` // confirmed, or where the load stands
	Balance    money.Fen  `json:"balance"`
	Reason     string     `json:"reason,omitempty"`
	RefundedBy *time.Time `json:"refunded_by,omitempty"` // the allow's expiry, when it is being cancelled
	// refused says the key refused GridPay's allow: the wallet is as it
	// was, and Reason says why.
	refused bool
}

// Errors of a load that the window tells apart (the CLI shows the message).
var (
	// errLoadNotConfirmed: the customer said no, or the confirmation
	// expired; nothing was signed.
	errLoadNotConfirmed = errors.New("load not confirmed")
	// errLoadOutcomeUnknown: the signed request was sent and no answer
	// came; the key's next session settles it.
	errLoadOutcomeUnknown = errors.New("the load's outcome is not known yet")
)

// loadQuestion is what the customer confirms before the key signs a load.
type loadQuestion struct {
	Amount      money.Fen
	Account     string // the prepaid account debited
	TokenSerial string
	Wallet      money.Fen // the wallet's balance before the load
}

// loadConfirmer asks the customer to confirm a load, as late as possible
// before the key signs: the terminal's expiring prompt for "client load",
// the confirmation page for the window. No (false) loads nothing.
type loadConfirmer func(ctx context.Context, q loadQuestion) (bool, error)

// terminalConfirm is the CLI's confirmation: a question on the terminal
// that expires after timeout, or none with --yes.
func (a *app) terminalConfirm(yes bool, timeout time.Duration) loadConfirmer {
	return func(ctx context.Context, q loadQuestion) (bool, error) {
		if yes {
			return true, nil
		}
		return a.confirm(ctx, fmt.Sprintf("Load %s from prepaid account %s onto USB key %s (wallet: %s)?", q.Amount.Display(), q.Account,
			q.TokenSerial, q.Wallet.Display()), timeout)
	}
}

func renderLoad(out io.Writer, tokenSerial string, res loadResult) {
	if res.refused {
		fmt.Fprintf(out, "Load %d of %s was not applied: %s.\n", res.Sequence, res.Amount.Display(), res.Reason)
		if res.RefundedBy != nil {
			fmt.Fprintf(out, "The amount goes back to your prepaid account once the allow has expired (%s).\n",
				res.RefundedBy.In(platform.Shanghai).Format("2006-01-02 15:04:05"))
		}
		return
	}
	fmt.Fprintf(out, "Loaded %s onto USB key %s (load %d, %s): %s.\n", res.Amount.Display(), tokenSerial, res.Sequence, res.LoadID, res.Status)
	fmt.Fprintf(out, "Wallet balance: %s\n", res.Balance.Display())
}

func (a *app) loadCommand() *cobra.Command {
	var amountText string
	var yes bool
	var confirmTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Load funds from your prepaid account onto the USB key's electronic wallet",
		Long: `load moves an amount from your prepaid account at the power company onto the
electronic wallet of your USB key (patent CN101211451A, 圈存):

  1. after the PIN, you confirm the amount (the question expires after
     load.confirm_timeout, 30 s by default: no answer is no; --yes for scripts);
  2. the USB key signs the load request (your wallet's balance and sequence
     number, your account, the amount);
  3. GridPay debits your prepaid account and answers with an allow command
     signed in its HSM; the client checks it (GridPay's certificate, the
     amount, the sequence number, its expiry) and credits the wallet on the key;
  4. the USB key signs the execution receipt, which GridPay confirms.

An allow that does not check out, or that arrives after its expiry, is refused:
the key sends a signed error report and GridPay credits the amount back to your
prepaid account once the allow has expired. If the confirmation cannot be sent,
nothing is lost: the next session ("client wallet") settles it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if amountText == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--amount is required, e.g. --amount 500.00"))
			}
			amount, err := money.ParseYuan(amountText)
			if err != nil || amount <= 0 {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("--amount: %q is not a positive amount of yuan", amountText))
			}
			if !cmd.Flags().Changed("confirm-timeout") {
				confirmTimeout = a.cfg.Load.ConfirmTimeout
			}
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				res, err := a.load(ctx, s, amount, a.terminalConfirm(yes, confirmTimeout))
				if res != nil {
					if perr := a.out.Print(res, func(out io.Writer) { renderLoad(out, s.key.TokenSerial, *res) }); err == nil {
						err = perr
					}
				}
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&amountText, "amount", "", "amount of yuan to load, e.g. 500.00")
	f.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	f.DurationVar(&confirmTimeout, "confirm-timeout", 30*time.Second, "how long the confirmation waits for an answer (load.confirm_timeout)")
	return cmd
}

// load runs the exchange on an open session, with the customer's
// confirmation from confirm. The result is nil until the key has taken or
// refused GridPay's allow; with an error it says why the key refused it.
// It prints nothing: "client load" and the window show the result.
func (a *app) load(ctx context.Context, s *session, amount money.Fen, confirm loadConfirmer) (*loadResult, error) {
	o, closeObjs, err := openKeyObjects(a, s.key)
	if err != nil {
		return nil, fail(cli.ExitUnavailable, err, "%v", err)
	}
	defer closeObjs()
	unlock, err := a.lockWallet(s.key.TokenSerial)
	if err != nil {
		return nil, err
	}
	defer unlock()
	roots, err := loadRoots(a.cfg.CAFile)
	if err != nil {
		return nil, err
	}
	w, err := readWallet(ctx, o, roots, s.key.TokenSerial)
	if err != nil {
		return nil, fail(cli.ExitAuth, err, "%v; please contact the power company", err)
	}
	if t := w.rec.Transfer; t != nil {
		return nil, fail(cli.ExitConflict, nil, "a transfer of %s to the meter card is pending: finish it first (client card balance, with the card)", t.Amount.Display())
	}
	// Settle what a previous session left open first: GridPay takes one
	// load of a key at a time.
	if at := w.rec.Attempt; at != nil && at.Outcome == attemptSent {
		// Its allow never arrived: the key gives it up for good and says
		// so, and GridPay refunds it once the allow (if any) has expired.
		at.Outcome = attemptAbandoned
		if err := writeWallet(ctx, o, w.rec); err != nil {
			return nil, err
		}
		if rep, err := walletReport(s, w, protocol.ReportError, at.Sequence, protocol.ErrAllowAbandoned, "no allow received", a.now()); err == nil {
			var gwErr *gatewayError
			if err := s.gw.post(ctx, api.PathLoadReports, rep, &api.LoadReportAnswer{}); err != nil && !(errors.As(err, &gwErr) && gwErr.Status == http.StatusNotFound) {
				a.warn("the previous load could not be reported as abandoned: %v", err)
			}
		}
	}
	if _, err := a.reportWallet(ctx, s, o, &w); err != nil {
		return nil, err
	}
	var me api.Me
	if err := a.fetch(ctx, s, "your account", api.PathMe, nil, &me); err != nil {
		return nil, err
	}
	if me.Customer.ID != s.id.CustomerID {
		return nil, fail(cli.ExitError, nil, "the gateway answered for another customer")
	}
	// The CRLs the allow's signer is checked with, fetched before anything
	// is signed: without them no load starts.
	rootCerts, err := loadRootCerts(a.cfg.CAFile)
	if err != nil {
		return nil, err
	}
	var crls api.CRLList
	if err := a.fetch(ctx, s, "GridPay's revocation lists", api.PathCRLs, nil, &crls); err != nil {
		return nil, err
	}
	ok, err := confirm(ctx, loadQuestion{Amount: amount, Account: me.Customer.AccountNumber, TokenSerial: s.key.TokenSerial, Wallet: w.Balance()})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fail(cli.ExitError, errLoadNotConfirmed, "not confirmed: nothing was loaded")
	}

	seq := w.Attempted() + 1
	req, signed, err := a.signLoadRequest(s, w, me.Customer.AccountNumber, amount, seq)
	if err != nil {
		return nil, err
	}
	// The attempt is on the key before the request leaves: whatever
	// happens next, the next request takes a higher number.
	w.rec.Attempt = &loadAttempt{Sequence: seq, LoadID: protocol.LoadID(s.key.TokenSerial, seq), Amount: amount, Started: a.now().UTC(), Outcome: attemptSent}
	if err := writeWallet(ctx, o, w.rec); err != nil {
		return nil, err
	}
	if loadFault("tamper-request") {
		signed.Request[len(signed.Request)-5] ^= 1
	}
	allow, err := a.sendLoadRequest(ctx, s, signed)
	var gwErr *gatewayError
	if errors.As(err, &gwErr) && gwErr.Status >= 400 && gwErr.Status < 500 {
		// Refused: nothing was debited, and this sequence is spent.
		w.rec.Attempt.Outcome = attemptRefused
		if werr := writeWallet(ctx, o, w.rec); werr != nil {
			a.warn("%v", werr)
		}
		a.appendWalletLog(s, walletLogEntry{At: a.now(), Kind: logLoadRefused, LoadID: w.rec.Attempt.LoadID, Sequence: seq, Amount: amount,
			Balance: w.Balance(), Note: gwErr.Message})
		return nil, loadRefusal(gwErr)
	}
	if err != nil {
		return nil, fail(cli.ExitUnavailable, fmt.Errorf("%w: %w", errLoadOutcomeUnknown, err),
			"the load's outcome is not known yet (%v); nothing is lost: it is settled at your next session (client wallet)", err)
	}
	if loadFault("drop-allow") {
		return nil, fail(cli.ExitError, errLoadOutcomeUnknown, "test fault: the allow was dropped")
	}
	if loadFault("tamper-allow") {
		allow.Allow[len(allow.Allow)/2] ^= 1
	}
	if loadFault("late-allow") {
		// As a slow network or a hesitant user would: past the expiry.
		time.Sleep(time.Until(allow.Expires) + time.Second)
	}

	st, code, why := verifyAllow(signerTrust{pool: roots, roots: rootCerts, crls: crls.CRLs}, allow, req, w, a.now())
	if code != 0 {
		return a.refuseAllow(ctx, s, o, w, seq, amount, code, why, allow.Expires)
	}
	// Credit the wallet: the new state GridPay signed, nothing spent since.
	w.rec.State, w.rec.StateSig, w.rec.Chain = st.encoded, st.sig, allow.Chain
	w.rec.Spent, w.rec.Transfers = 0, 0
	w.rec.Attempt.Outcome = attemptApplied
	if err := writeWallet(ctx, o, w.rec); err != nil {
		return nil, fail(cli.ExitError, fmt.Errorf("%w: %w", errLoadOutcomeUnknown, err), "%v; the load is settled at your next session (client wallet)", err)
	}
	w.state = &st.state
	a.appendWalletLog(s, walletLogEntry{At: a.now(), Kind: logLoad, LoadID: w.rec.Attempt.LoadID, Sequence: seq, Amount: amount, Balance: w.Balance()})

	res := loadResult{LoadID: w.rec.Attempt.LoadID, Sequence: seq, Amount: amount, Balance: w.Balance(), Status: "applied"}
	if loadFault("drop-receipt") {
		res.Status = "applied, not confirmed"
	} else if out, err := a.sendReceipt(ctx, s, w, seq); err != nil {
		a.warn("the wallet took the load, but the confirmation could not be sent (%v); it is sent at your next session", err)
		res.Status = "applied, not confirmed"
	} else {
		res.Status = out.Status
	}
	return &res, nil
}

// signLoadRequest builds the request from the wallet and has the key sign
// it.
func (a *app) signLoadRequest(s *session, w wallet, account string, amount money.Fen, seq uint64) (protocol.LoadRequest, api.LoadRequest, error) {
	alg, err := protocol.AlgorithmFor(s.key.Signer.Public())
	if err != nil {
		return protocol.LoadRequest{}, api.LoadRequest{}, err
	}
	r := protocol.LoadRequest{
		LoadHeader: protocol.LoadHeader{Version: protocol.LoadProtocolVersion, Type: protocol.TypeLoadRequest, TokenSerial: s.key.TokenSerial,
			CertSerial: pki.SerialHex(s.key.Leaf.SerialNumber), KeyVersion: protocol.KeyVersion, Algorithm: alg,
			Nonce: protocol.NewNonce(protocol.MinNonceSize), Timestamp: a.now().UTC().Truncate(time.Second), Sequence: seq},
		CustomerID: s.id.CustomerID, Account: account, WalletBalance: w.Balance(), WalletSequence: w.Sequence(), WalletLastLoad: w.LastLoad(),
		Amount: amount, Currency: protocol.Currency,
	}
	enc, err := protocol.EncodeLoadRequest(r)
	if err != nil {
		return protocol.LoadRequest{}, api.LoadRequest{}, fail(cli.ExitUsage, err, "%v", err)
	}
	sig, err := protocol.Sign(s.key.Signer, alg, protocol.LoadRequestDigest(enc))
	if err != nil {
		return protocol.LoadRequest{}, api.LoadRequest{}, fmt.Errorf("the USB key could not sign the load request: %w", err)
	}
	return r, api.LoadRequest{Request: enc, Signature: sig}, nil
}

// sendLoadRequest sends the signed request, and the very same bytes again
// while the gateway cannot answer yet (the debit may take a while): GridPay
// answers a repeated request with the same allow and never debits twice.
func (a *app) sendLoadRequest(ctx context.Context, s *session, req api.LoadRequest) (api.LoadAllow, error) {
	p := a.progress("sending the load request to the gateway")
	var allow api.LoadAllow
	var err error
	for attempt := 1; ; attempt++ {
		err = s.gw.post(ctx, api.PathLoads, req, &allow)
		var gwErr *gatewayError
		retry := err != nil && attempt < 4 && (!errors.As(err, &gwErr) || gwErr.Status == http.StatusServiceUnavailable || gwErr.Status == http.StatusGatewayTimeout)
		if !retry {
			break
		}
		select {
		case <-ctx.Done():
			p.Done("stopped")
			return api.LoadAllow{}, ctx.Err()
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	if err != nil {
		p.Done("failed")
		return api.LoadAllow{}, err
	}
	p.Done("allowed")
	return allow, nil
}

// loadRefusal gives a gateway's refusal its exit code.
func loadRefusal(e *gatewayError) error {
	switch e.Code {
	case api.CodeLoadPending, api.CodeSequenceUsed:
		return cli.WithCode(cli.ExitConflict, e)
	case api.CodeLoadRefused:
		return cli.WithCode(cli.ExitError, e)
	}
	return e
}

// checkedState is the new wallet state of a verified allow.
type checkedState struct {
	state   protocol.WalletState
	encoded []byte
	sig     []byte
}

// signerTrust is what the load signer is checked with: GridPay's roots
// (ca_file) and its CRLs.
type signerTrust struct {
	pool  *x509.CertPool
	roots []*x509.Certificate
	crls  [][]byte
}

// verifyAllow checks an allow against the request and the wallet: the
// signer is GridPay's load service (chain to the root), both signatures
// verify, it allows exactly what was asked on top of this wallet, its host
// time agrees with this clock and it has not expired. A refusal comes back
// as its error code and why.
func verifyAllow(t signerTrust, ans api.LoadAllow, req protocol.LoadRequest, w wallet, now time.Time) (checkedState, protocol.ErrorCode, string) {
	signer, err := verifyLoadSigner(t.pool, ans.Chain, now)
	if err != nil {
		return checkedState{}, protocol.ErrAllowCertificate, err.Error()
	}
	if err := checkSignerRevocation(t.roots, ans.Chain, t.crls, now); err != nil {
		return checkedState{}, protocol.ErrAllowCertificate, err.Error()
	}
	al, st, err := protocol.VerifyLoadAllow(signer, ans.Allow, ans.Signature)
	if err != nil {
		return checkedState{}, protocol.ErrAllowSignature, err.Error()
	}
	switch {
	case al.TokenSerial != req.TokenSerial || al.CustomerID != req.CustomerID:
		return checkedState{}, protocol.ErrAllowMismatch, "the allow is for another customer or key"
	case al.Sequence != req.Sequence:
		return checkedState{}, protocol.ErrAllowMismatch, fmt.Sprintf("the allow authorises sequence %d, the request was %d", al.Sequence, req.Sequence)
	case al.Amount != req.Amount:
		return checkedState{}, protocol.ErrAllowMismatch, fmt.Sprintf("the allow is for %s, the request for %s", al.Amount.Display(), req.Amount.Display())
	case al.PrevSequence != w.Sequence():
		return checkedState{}, protocol.ErrAllowMismatch, fmt.Sprintf("the allow applies on top of load %d, the wallet is at %d", al.PrevSequence, w.Sequence())
	case st.Balance != w.Balance()+req.Amount:
		return checkedState{}, protocol.ErrAllowMismatch, fmt.Sprintf("the new balance %s is not %s + %s", st.Balance.Display(), w.Balance().Display(), req.Amount.Display())
	}
	if d := now.Sub(al.Timestamp); d > maxAllowSkew || d < -maxAllowSkew {
		return checkedState{}, protocol.ErrAllowClock, fmt.Sprintf("GridPay's time %s is more than %s from this computer's clock", al.Timestamp.Format(time.RFC3339), maxAllowSkew)
	}
	if !now.Before(al.Expires) {
		return checkedState{}, protocol.ErrAllowExpired, fmt.Sprintf("the allow expired at %s", al.Expires.In(platform.Shanghai).Format("15:04:05"))
	}
	return checkedState{state: st, encoded: al.State, sig: al.StateSignature}, 0, ""
}

// refuseAllow records on the key that it will never apply this allow,
// signs an error report and sends it: GridPay refunds once the allow has
// expired. The result says so, beside the error.
func (a *app) refuseAllow(ctx context.Context, s *session, o keyObjects, w wallet, seq uint64, amount money.Fen, code protocol.ErrorCode, why string, expires time.Time) (*loadResult, error) {
	w.rec.Attempt.Outcome = attemptAbandoned
	if err := writeWallet(ctx, o, w.rec); err != nil {
		return nil, err
	}
	a.appendWalletLog(s, walletLogEntry{At: a.now(), Kind: logLoadRefused, LoadID: w.rec.Attempt.LoadID, Sequence: seq, Amount: amount,
		Balance: w.Balance(), Note: "allow refused: " + why})
	res := loadResult{LoadID: w.rec.Attempt.LoadID, Sequence: seq, Amount: amount, Balance: w.Balance(), Status: "cancelling",
		Reason: "the USB key refused GridPay's allow: " + why, refused: true}
	if !expires.IsZero() {
		res.RefundedBy = &expires
	}
	rep, err := walletReport(s, w, protocol.ReportError, seq, code, why, a.now())
	if err == nil {
		var ans api.LoadReportAnswer
		if err = s.gw.post(ctx, api.PathLoadReports, rep, &ans); err == nil && len(ans.Loads) == 1 {
			res.Status = ans.Loads[0].Status
		}
	}
	if err != nil {
		a.warn("the error report could not be sent (%v); it is settled at your next session", err)
	}
	return &res, fail(cli.ExitError, nil, "load %d not applied: %s", seq, why)
}

// sendReceipt signs the execution receipt and sends it.
func (a *app) sendReceipt(ctx context.Context, s *session, w wallet, seq uint64) (api.LoadStatus, error) {
	rep, err := walletReport(s, w, protocol.ReportReceipt, seq, 0, "", a.now())
	if err != nil {
		return api.LoadStatus{}, err
	}
	if loadFault("tamper-receipt") {
		rep.Report[len(rep.Report)/2] ^= 1
	}
	var ans api.LoadReportAnswer
	if err := s.gw.post(ctx, api.PathLoadReports, rep, &ans); err != nil {
		return api.LoadStatus{}, err
	}
	if len(ans.Loads) != 1 {
		return api.LoadStatus{}, fmt.Errorf("the gateway answered about %d loads", len(ans.Loads))
	}
	return ans.Loads[0], nil
}

// confirm asks a yes/no question that expires: no answer within timeout
// is no, as in the patent. It needs a terminal (or --yes).
func (a *app) confirm(ctx context.Context, question string, timeout time.Duration) (bool, error) {
	in, tty := confirmInput()
	if !tty {
		return false, fail(cli.ExitUsage, nil, "a confirmation is needed but stdin is not a terminal: run with --yes to confirm in advance")
	}
	fmt.Fprintf(a.stderr, "%s [y/N] (answer within %s) ", question, timeout)
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(in).ReadString('\n')
		answer <- strings.ToLower(strings.TrimSpace(line))
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case s := <-answer:
		return s == "y" || s == "yes", nil
	case <-t.C:
		fmt.Fprintln(a.stderr, "\nno answer in time: not confirmed")
		return false, nil
	case <-ctx.Done():
		fmt.Fprintln(a.stderr)
		return false, fail(cli.ExitError, ctx.Err(), "interrupted")
	}
}
