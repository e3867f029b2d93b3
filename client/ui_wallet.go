package main

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

// The Wallet page: the electronic wallet on the USB key (patent
// CN101211451A, 圈存) and the meter card. Every action runs the CLI's own
// code on the window's session: walletOf ("client wallet"), load ("client
// load") with the confirmation page in place of the terminal's prompt, and
// withCardOn and cardTransfer ("client card balance|transfer") with the
// card's PIN from the form.
//
// The patent's expiring confirmation is a page. POST /wallet/load checks
// the amount and answers with the amount, the account and a countdown,
// and a confirmation token bound to this browser session and this unlocked
// key. POST /wallet/load/confirm with that token, before it expires
// (load.confirm_timeout, as for the CLI), lets the key sign. A token is
// spent by its first use: a replayed or resubmitted form finds it spent and
// loads nothing. A load or a card operation ends in a redirect to its
// result (POST, redirect, GET), so that reloading the page repeats nothing
// and the card's PIN is never sent again by the browser.

const (
	// maxConfirmations bounds the confirmations kept per window (a few are
	// open at a time; spent ones stay a while to answer a replay).
	maxConfirmations = 32
	// maxWalletResults bounds the results kept for their pages.
	maxWalletResults = 32
	// recentShown is how many entries of the local log the page lists.
	recentShown = 10
	// loadRunTimeout bounds a load started from the window. The load goes
	// on when the browser goes away: its outcome is on the wallet page.
	loadRunTimeout = 3 * time.Minute
)

// walletActions holds the window's load confirmations and the results of
// its wallet actions.
type walletActions struct {
	mu       sync.Mutex
	confirms map[string]*loadConfirmation // by token
	results  map[string]*walletResult     // by result ID
	order    []string                     // result IDs, oldest first
}

// loadConfirmation is a load waiting for the customer's confirmation.
type loadConfirmation struct {
	client  *uiClient
	sess    *uiSession
	q       loadQuestion
	expires time.Time
	used    bool
	result  string // the result's ID, once the load ran
}

// walletResult is the outcome of a load or a card operation, for the page
// that shows it to the browser session that asked.
type walletResult struct {
	client *uiClient
	load   *loadOutcome
	card   *cardOutcome
}

// newConfirmation records a load to confirm before expires and returns its
// token.
func (wa *walletActions) newConfirmation(c *loadConfirmation, now time.Time) (string, error) {
	token, err := randomToken(24)
	if err != nil {
		return "", err
	}
	wa.mu.Lock()
	defer wa.mu.Unlock()
	if wa.confirms == nil {
		wa.confirms = map[string]*loadConfirmation{}
	}
	// Forget confirmations long expired, then the oldest if still full.
	for t, old := range wa.confirms {
		if now.Sub(old.expires) > 10*time.Minute {
			delete(wa.confirms, t)
		}
	}
	for len(wa.confirms) >= maxConfirmations {
		oldest := ""
		for t, old := range wa.confirms {
			if oldest == "" || old.expires.Before(wa.confirms[oldest].expires) {
				oldest = t
			}
		}
		delete(wa.confirms, oldest)
	}
	wa.confirms[token] = c
	return token, nil
}

// Answers of take.
const (
	confirmOK      = "ok"
	confirmUnknown = "unknown" // no such token for this browser and key (or cancelled)
	confirmUsed    = "used"
	confirmExpired = "expired"
)

// take spends the confirmation token for client on session sess: the
// first call gets confirmOK (or confirmExpired), every later one
// confirmUsed.
func (wa *walletActions) take(token string, client *uiClient, sess *uiSession, now time.Time) (*loadConfirmation, string) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	c := wa.confirms[token]
	switch {
	case token == "" || c == nil || c.client != client || c.sess != sess:
		return nil, confirmUnknown
	case c.used:
		return c, confirmUsed
	}
	c.used = true
	if !now.Before(c.expires) {
		return c, confirmExpired
	}
	return c, confirmOK
}

// cancel drops an unused confirmation of client.
func (wa *walletActions) cancel(token string, client *uiClient) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	if c := wa.confirms[token]; c != nil && c.client == client && !c.used {
		delete(wa.confirms, token)
	}
}

// keep stores a result and returns its ID.
func (wa *walletActions) keep(r *walletResult) (string, error) {
	id, err := randomToken(12)
	if err != nil {
		return "", err
	}
	wa.mu.Lock()
	defer wa.mu.Unlock()
	if wa.results == nil {
		wa.results = map[string]*walletResult{}
	}
	if len(wa.order) >= maxWalletResults {
		delete(wa.results, wa.order[0])
		wa.order = wa.order[1:]
	}
	wa.results[id] = r
	wa.order = append(wa.order, id)
	return id, nil
}

// markDone links a spent confirmation to its result.
func (wa *walletActions) markDone(c *loadConfirmation, id string) {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	c.result = id
}

func (wa *walletActions) resultOf(c *loadConfirmation) string {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	return c.result
}

// result is the result id of client, or nil.
func (wa *walletActions) result(id string, client *uiClient) *walletResult {
	wa.mu.Lock()
	defer wa.mu.Unlock()
	if r := wa.results[id]; r != nil && r.client == client {
		return r
	}
	return nil
}

// quiet is the app as the window's actions run the CLI's code: progress
// lines and warnings, written for a terminal, go to the log instead.
func (a *app) quiet() *app {
	q := *a
	q.stderr = logWriter{log: a.log.Named("wallet")}
	q.progress = func(string) interface{ Done(string) } { return quietProgress{} }
	return &q
}

type quietProgress struct{}

func (quietProgress) Done(string) {}

// logWriter logs each write as a warning.
type logWriter struct{ log *zap.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	if msg := strings.TrimSpace(strings.TrimPrefix(string(p), "warning: ")); msg != "" {
		w.log.Warn(msg)
	}
	return len(p), nil
}

// walletFatal says an error of a wallet action means the gateway refused
// the key (revoked, unbound...): the session ends as on any page. Other
// errors, the wallet's and the meter card's own among them (a wrong card
// PIN, no card in the reader, a wallet that does not verify), say nothing
// about the key's session and are shown on the page.
func walletFatal(err error) bool {
	var gw *gatewayError
	if errors.As(err, &gw) {
		return exitCodeFor(gw.Code, gw.Status) == cli.ExitAuth
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "remote error"
}

// readKeyWallet reads and verifies the wallet on the session's key,
// without the gateway.
func (s *uiServer) readKeyWallet(ctx context.Context, ks *uiSession) (wallet, error) {
	o, closeObjs, err := openKeyObjects(s.a, ks.key)
	if err != nil {
		return wallet{}, err
	}
	defer closeObjs()
	roots, err := loadRoots(s.a.cfg.CAFile)
	if err != nil {
		return wallet{}, err
	}
	return readWallet(ctx, o, roots, ks.key.TokenSerial)
}

// parseAmountField checks an amount typed on a page: yuan with at most two
// decimals, more than zero. It returns the message to show when it is not.
func parseAmountField(lang, text string) (money.Fen, string) {
	text = strings.TrimSpace(text)
	if text == "" {
		return 0, tr(lang, "wal.amount.empty")
	}
	if _, frac, ok := strings.Cut(text, "."); ok && len(frac) > 2 && strings.Trim(frac, "0123456789") == "" {
		return 0, tr(lang, "wal.amount.decimals")
	}
	amount, err := money.ParseYuan(text)
	switch {
	case err != nil:
		return 0, tr(lang, "wal.amount.bad")
	case amount <= 0:
		return 0, tr(lang, "wal.amount.zero")
	}
	return amount, ""
}

// describeWalletError shows an error of the wallet on the key.
func describeWalletError(lang string, err error) *uiErr {
	switch {
	case errors.Is(err, ErrWalletInvalid):
		return &uiErr{Title: tr(lang, "wal.err.invalid"), Detail: err.Error()}
	case errors.Is(err, hsm.ErrModuleMissing), errors.Is(err, hsm.ErrTokenAbsent):
		return &uiErr{Title: tr(lang, "wal.err.read"), Detail: err.Error()}
	case cli.ExitCode(err) == cli.ExitConflict:
		return &uiErr{Title: tr(lang, "wal.err.busy"), Detail: err.Error()}
	}
	return describeError(lang, err)
}

// describeCardError shows an error of a card operation. The detail is the
// CLI's message: it names the card by its masked number only, and never
// holds the PIN.
func describeCardError(lang string, err error) *uiErr {
	key := ""
	switch {
	case errors.Is(err, hsm.ErrWrongPIN):
		key = "card.err.pin"
	case errors.Is(err, hsm.ErrPINLocked):
		key = "card.err.locked"
	case errors.Is(err, hsm.ErrPINLength), errors.Is(err, hsm.ErrPINInvalid):
		key = "card.err.pinform"
	case errors.Is(err, hsm.ErrTokenAbsent):
		key = "card.err.absent"
	case errors.Is(err, errWalletShort):
		key = "card.err.short"
	case errors.Is(err, ErrWalletInvalid):
		key = "wal.err.invalid"
	case cli.ExitCode(err) == cli.ExitAuth:
		key = "card.err.auth"
	case cli.ExitCode(err) == cli.ExitConflict:
		key = "wal.err.busy"
	default:
		return describeError(lang, err)
	}
	return &uiErr{Title: tr(lang, key), Detail: err.Error()}
}

// ---- the wallet page ----

type walletPageView struct {
	page
	KeyLabel, KeySerial string
	// W is the wallet as "client wallet" shows it; Invalid says why it
	// could not be read (then nothing can be loaded or moved).
	W        walletView
	Invalid  *uiErr
	SignedAt string
	Open     []openLoadRow
	Recent   []logRow
	Card     cardPanel
	Timeout  string // the confirmation's time limit, as shown

	AmountField string // the load form's amount, back after an error
	LoadErr     string
	CardAmount  string
	CardErr     string
	CardResult  *cardOutcome
	// The card issue form's fields, back after an error (never the PIN).
	CardLabel, CardNumber string
}

// Loaded says the wallet took at least one load, so GridPay's signature
// over it was checked.
func (v walletPageView) Loaded() bool { return v.Invalid == nil && v.W.SignedAt != nil }

// openLoadRow is a load GridPay is settling, or the key's attempt whose
// outcome it does not know yet.
type openLoadRow struct {
	Sequence uint64
	LoadID   string
	Amount   money.Fen
	Status   string
	Reason   string
	Expires  time.Time
	Final    bool
}

// logRow is an entry of the local signed log.
type logRow struct {
	At       time.Time
	Kind     string
	LoadID   string
	Sequence uint64
	Amount   money.Fen
	Balance  money.Fen
	Card     string
	Note     string
}

// cardPanel is the meter card bound to the key.
type cardPanel struct {
	Bound    bool
	Masked   string
	Serial   string // the card token's serial, not its number
	IssuedAt time.Time
	Present  bool
	Problem  string
}

// cardOutcome is what a card operation did.
type cardOutcome struct {
	Issued   bool // the card was bound to the key
	Transfer bool
	Amount   money.Fen
	View     cardView
	Err      *uiErr
}

func (p page) LoadStatus(st string) string {
	return trOr(p.Lang, "load.st.", strings.NewReplacer("-", "_", ", ", "_", " ", "_").Replace(st))
}

// Class makes a status word a CSS class name ("applied, not confirmed"
// is applied-not-confirmed).
func (p page) Class(word string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(word), func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9')
	}), "-")
}

func (p page) LogKind(kind string) string {
	return trOr(p.Lang, "log.", strings.ReplaceAll(kind, "-", "_"))
}

func (p page) Seconds(d time.Duration) string {
	return p.Tf("wal.seconds", int(d.Round(time.Second)/time.Second))
}

func (s *uiServer) walletView(r *http.Request, ks *uiSession) walletPageView {
	ctx := r.Context()
	p := s.page(r, "wallet", "wal.title")
	v := walletPageView{page: p, KeyLabel: ks.key.TokenLabel, KeySerial: ks.key.TokenSerial, Timeout: p.Seconds(s.a.cfg.Load.ConfirmTimeout)}
	qa := s.a.quiet()
	wv, err := qa.walletOf(ctx, ks.session, false, recentShown)
	if err != nil {
		v.Invalid = describeWalletError(p.Lang, err)
		return v
	}
	v.W = wv
	if wv.SignedAt != nil {
		v.SignedAt = uiInstant(*wv.SignedAt)
	}
	seen := map[uint64]bool{}
	for _, l := range wv.Loads {
		seen[l.Sequence] = true
		row := openLoadRow{Sequence: l.Sequence, LoadID: l.LoadID, Amount: l.Amount, Status: l.Status, Reason: l.Reason, Final: l.Final}
		if l.Expires != nil {
			row.Expires = *l.Expires
		}
		v.Open = append(v.Open, row)
	}
	if at := wv.Attempt; at != nil && !seen[at.Sequence] && (at.Outcome == attemptSent || at.Outcome == attemptAbandoned) {
		v.Open = append(v.Open, openLoadRow{Sequence: at.Sequence, LoadID: at.LoadID, Amount: at.Amount, Status: at.Outcome})
	}
	for i := len(wv.Recent) - 1; i >= 0; i-- {
		e := wv.Recent[i]
		v.Recent = append(v.Recent, logRow{At: e.At, Kind: e.Kind, LoadID: e.LoadID, Sequence: e.Sequence, Amount: e.Amount, Balance: e.Balance,
			Card: e.Card, Note: e.Note})
	}
	v.Card = s.cardPanel(ctx, ks)
	return v
}

// cardPanel reads the key's record of its meter card and looks for the
// card (its public objects only: no PIN).
func (s *uiServer) cardPanel(ctx context.Context, ks *uiSession) cardPanel {
	var cp cardPanel
	o, closeObjs, err := openKeyObjects(s.a, ks.key)
	if err != nil {
		cp.Problem = err.Error()
		return cp
	}
	b, found, err := readCardBinding(ctx, o)
	closeObjs()
	switch {
	case err != nil:
		cp.Problem = err.Error()
		return cp
	case !found:
		return cp
	}
	cp.Bound, cp.Masked, cp.Serial, cp.IssuedAt = true, maskCard(b.CardNumber), b.CardSerial, b.IssuedAt
	if card, err := openCard(s.a, hsm.Selector{Serial: b.CardSerial}, nil); err == nil {
		cp.Present = true
		card.Close()
	} else if !errors.Is(err, hsm.ErrTokenAbsent) {
		s.log.Debug("looking for the meter card", zap.Error(err))
	}
	return cp
}

func (s *uiServer) walletPage(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	v := s.walletView(r, ks)
	if id := r.URL.Query().Get("card"); id != "" {
		if res := s.wallet.result(id, callOf(r).client); res != nil && res.card != nil {
			v.CardResult = res.card
		}
	}
	s.render(w, http.StatusOK, "wallet", v)
	return nil
}

// ---- load: the amount, the confirmation, the result ----

type loadConfirmView struct {
	page
	Token    string
	Q        loadQuestion
	After    money.Fen
	KeyLabel string
	Expires  string // the time the confirmation expires, Asia/Shanghai
	Seconds  int    // the countdown's start
	Timeout  string
}

// loadSubmit checks the amount and asks for the confirmation. Nothing is
// signed yet.
func (s *uiServer) loadSubmit(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	call := callOf(r)
	ctx := r.Context()
	text := strings.TrimSpace(call.form.get("amount"))
	again := func(msg string, werr *uiErr) {
		v := s.walletView(r, ks)
		v.AmountField, v.LoadErr = text, msg
		if werr != nil && v.Invalid == nil {
			v.Err = werr
		}
		s.render(w, http.StatusBadRequest, "wallet", v)
	}
	amount, msg := parseAmountField(call.lang, text)
	if msg != "" {
		again(msg, nil)
		return nil
	}
	wal, err := s.readKeyWallet(ctx, ks)
	if err != nil {
		again("", describeWalletError(call.lang, err))
		return nil
	}
	if t := wal.rec.Transfer; t != nil {
		again(trf(call.lang, "wal.err.transfer", t.Amount.Display()), nil)
		return nil
	}
	var me api.Me
	if err := ks.gw.get(ctx, api.PathMe, nil, &me); err != nil {
		return err
	}
	ks.me.Store(&me)
	timeout := s.a.cfg.Load.ConfirmTimeout
	c := &loadConfirmation{client: call.client, sess: ks, expires: s.now().Add(timeout),
		q: loadQuestion{Amount: amount, Account: me.Customer.AccountNumber, TokenSerial: ks.key.TokenSerial, Wallet: wal.Balance()}}
	token, err := s.wallet.newConfirmation(c, s.now())
	if err != nil {
		return err
	}
	p := s.page(r, "wallet", "wal.confirm.title")
	s.render(w, http.StatusOK, "loadconfirm", loadConfirmView{page: p, Token: token, Q: c.q, After: c.q.Wallet + amount, KeyLabel: ks.key.TokenLabel,
		Expires: c.expires.In(platform.Shanghai).Format("15:04:05"), Seconds: int(timeout / time.Second), Timeout: p.Seconds(timeout)})
	return nil
}

// loadCancel drops the confirmation: nothing was signed.
func (s *uiServer) loadCancel(w http.ResponseWriter, r *http.Request, _ *uiSession) error {
	call := callOf(r)
	s.wallet.cancel(call.form.get("confirm"), call.client)
	http.Redirect(w, r, "/wallet", http.StatusSeeOther)
	return nil
}

// loadOutcome is how a load from the window ended, for its result page.
type loadOutcome struct {
	// Kind: confirmed; credited (in the wallet, GridPay not told yet);
	// refused (by the key: the refund follows); declined (by GridPay:
	// nothing taken); pending (no answer: the next session settles it);
	// expired, used, unknown (the confirmation: nothing signed); failed.
	Kind      string
	Amount    money.Fen
	Account   string
	LoadID    string
	Sequence  uint64
	Status    string
	Reason    string
	RefundBy  time.Time
	Balance   money.Fen // the wallet's now
	WalletSeq uint64
	Known     bool // Balance and WalletSeq could be read
	Err       *uiErr
	Result    string // for used: the first use's result
}

type loadResultView struct {
	page
	O        loadOutcome
	Headline string
	Text     string
}

// loadConfirm spends the confirmation and, if it is still valid, runs the
// load: the key signs it.
func (s *uiServer) loadConfirm(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	call := callOf(r)
	c, state := s.wallet.take(call.form.get("confirm"), call.client, ks, s.now())
	switch state {
	case confirmUnknown:
		s.renderLoadResult(w, r, http.StatusConflict, loadOutcome{Kind: "unknown"})
		return nil
	case confirmUsed:
		s.renderLoadResult(w, r, http.StatusConflict, loadOutcome{Kind: "used", Amount: c.q.Amount, Result: s.wallet.resultOf(c)})
		return nil
	case confirmExpired:
		o := loadOutcome{Kind: "expired", Amount: c.q.Amount, Account: c.q.Account}
		s.walletNow(r.Context(), ks, &o)
		s.renderLoadResult(w, r, http.StatusConflict, o)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), loadRunTimeout)
	defer cancel()
	res, err := s.a.quiet().load(ctx, ks.session, c.q.Amount, func(_ context.Context, q loadQuestion) (bool, error) {
		// The key signs what the customer confirmed, while still in time.
		return q.Amount == c.q.Amount && q.Account == c.q.Account && q.TokenSerial == c.q.TokenSerial && s.now().Before(c.expires), nil
	})
	if walletFatal(err) {
		return err
	}
	o := loadOutcomeOf(call.lang, c.q, res, err)
	if err != nil {
		s.log.Info("load from the window not completed", zap.String("outcome", o.Kind), zap.Error(err))
	}
	s.walletNow(ctx, ks, &o)
	id, kerr := s.wallet.keep(&walletResult{client: call.client, load: &o})
	if kerr != nil {
		return kerr
	}
	s.wallet.markDone(c, id)
	http.Redirect(w, r, "/wallet/load/"+url.PathEscape(id), http.StatusSeeOther)
	return nil
}

// loadOutcomeOf classifies what load returned.
func loadOutcomeOf(lang string, q loadQuestion, res *loadResult, err error) loadOutcome {
	o := loadOutcome{Amount: q.Amount, Account: q.Account}
	if res != nil {
		o.LoadID, o.Sequence, o.Status, o.Reason = res.LoadID, res.Sequence, res.Status, res.Reason
		if res.RefundedBy != nil {
			o.RefundBy = *res.RefundedBy
		}
	}
	var gw *gatewayError
	switch {
	case err == nil && res != nil && res.Status == "confirmed":
		o.Kind = "confirmed"
	case err == nil:
		o.Kind = "credited"
	case res != nil && res.refused:
		o.Kind = "refused"
	case errors.Is(err, errLoadNotConfirmed):
		o.Kind = "expired"
	case errors.Is(err, errLoadOutcomeUnknown):
		o.Kind = "pending"
	case errors.As(err, &gw) && gw.Status >= 400 && gw.Status < 500:
		o.Kind, o.Reason = "declined", gw.Error()
	default:
		o.Kind, o.Err = "failed", describeWalletError(lang, err)
	}
	return o
}

// walletNow puts the wallet's balance and sequence now into o.
func (s *uiServer) walletNow(ctx context.Context, ks *uiSession, o *loadOutcome) {
	if wal, err := s.readKeyWallet(ctx, ks); err == nil {
		o.Balance, o.WalletSeq, o.Known = wal.Balance(), wal.Sequence(), true
	}
}

func (s *uiServer) loadResultPage(w http.ResponseWriter, r *http.Request, _ *uiSession) error {
	res := s.wallet.result(r.PathValue("id"), callOf(r).client)
	if res == nil || res.load == nil {
		s.notFound(w, r)
		return nil
	}
	s.renderLoadResult(w, r, http.StatusOK, *res.load)
	return nil
}

func (s *uiServer) renderLoadResult(w http.ResponseWriter, r *http.Request, status int, o loadOutcome) {
	p := s.page(r, "wallet", "wal.result.title")
	v := loadResultView{page: p, O: o, Headline: p.T("wal.res." + o.Kind + ".h")}
	amount := o.Amount.Display()
	switch o.Kind {
	case "confirmed":
		v.Text = p.Tf("wal.res.confirmed", amount, o.Account)
	case "credited":
		v.Text = p.Tf("wal.res.credited", amount)
	case "refused":
		if o.RefundBy.IsZero() {
			v.Text = p.Tf("wal.res.refused", amount)
		} else {
			v.Text = p.Tf("wal.res.refused.by", amount, uiInstantSeconds(o.RefundBy))
		}
	case "expired":
		v.Text = p.Tf("wal.res.expired", p.Seconds(s.a.cfg.Load.ConfirmTimeout))
	case "failed":
		v.Text = p.T("wal.res.failed")
		v.Err = o.Err
	default:
		v.Text = p.T("wal.res." + o.Kind)
	}
	s.render(w, status, "loadresult", v)
}

func uiInstantSeconds(t time.Time) string {
	return t.In(platform.Shanghai).Format("2006-01-02 15:04:05")
}

// ---- the meter card ----

// cardSubmit reads the card's balance, or moves an amount onto it, with
// the PIN typed in the form. The PIN goes to the card and nowhere else: it
// is zeroed after use and never written back into a page.
func (s *uiServer) cardSubmit(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	call := callOf(r)
	pin := call.form["card_pin"]
	defer clear(pin)
	ctx := r.Context()
	transfer := call.form.get("action") == "transfer"
	text := strings.TrimSpace(call.form.get("amount"))
	again := func(msg string) {
		v := s.walletView(r, ks)
		v.CardAmount, v.CardErr = text, msg
		s.render(w, http.StatusBadRequest, "wallet", v)
	}
	var amount money.Fen
	if transfer {
		var msg string
		if amount, msg = parseAmountField(call.lang, text); msg != "" {
			again(msg)
			return nil
		}
	}
	if len(pin) == 0 {
		again(tr(call.lang, "card.pin.empty"))
		return nil
	}
	cp := s.cardPanel(ctx, ks)
	if !cp.Bound {
		again(tr(call.lang, "card.none"))
		return nil
	}
	qa := s.a.quiet()
	out := &cardOutcome{Transfer: transfer, Amount: amount}
	err := qa.withCardOn(ctx, ks.session, cardFlags{serial: cp.Serial, pin: pin},
		func(ctx context.Context, sess *session, o keyObjects, wal *wallet, bc *boundCard, v *cardView) error {
			if transfer {
				// The form, sent with the card's PIN, is the confirmation.
				yes := func(string) (bool, error) { return true, nil }
				if err := qa.cardTransfer(ctx, sess, o, wal, bc, v, amount, yes); err != nil {
					return err
				}
			}
			out.View = *v
			return nil
		})
	if walletFatal(err) {
		return err
	}
	if err != nil {
		out.Err = describeCardError(call.lang, err)
		s.log.Info("meter card operation from the window failed", zap.Bool("transfer", transfer), zap.Error(err))
	}
	id, err := s.wallet.keep(&walletResult{client: call.client, card: out})
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/wallet?card="+url.QueryEscape(id)+"#card", http.StatusSeeOther)
	return nil
}

// cardIssueSubmit binds a blank meter card in the reader to the key, as
// "client card issue" does: the card's token label (on its sleeve), its
// number and its PIN come from the form.
func (s *uiServer) cardIssueSubmit(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	call := callOf(r)
	pin := call.form["card_pin"]
	defer clear(pin)
	label := strings.TrimSpace(call.form.get("card_label"))
	number := strings.TrimSpace(call.form.get("card_number"))
	var msg string
	switch {
	case label == "":
		msg = tr(call.lang, "card.label.empty")
	case !cardNumberPattern.MatchString(number):
		msg = tr(call.lang, "card.number.bad")
	case len(pin) == 0:
		msg = tr(call.lang, "card.pin.empty")
	}
	if msg != "" {
		v := s.walletView(r, ks)
		v.CardLabel, v.CardNumber, v.CardErr = label, number, msg
		s.render(w, http.StatusBadRequest, "wallet", v)
		return nil
	}
	out := &cardOutcome{Issued: true}
	view, err := s.a.quiet().bindCard(r.Context(), ks.session, cardFlags{label: label, pin: pin}, hsm.Selector{Label: label}, number)
	if walletFatal(err) {
		return err
	}
	if err != nil {
		out.Err = describeCardError(call.lang, err)
		s.log.Info("binding a meter card from the window failed", zap.Error(err))
	} else {
		out.View = view
	}
	id, err := s.wallet.keep(&walletResult{client: call.client, card: out})
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/wallet?card="+url.QueryEscape(id)+"#card", http.StatusSeeOther)
	return nil
}

// ---- loads in the history ----

// Statuses of loads in the history (the payments' are platform's).
const (
	histLoaded  = "loaded"  // in the wallet
	histRefused = "refused" // not in the wallet: refused by GridPay, or by the key (then refunded)
	histPending = "pending" // sent, no allow received yet
)

var loadHistoryStatuses = []string{histLoaded, histRefused, histPending}

// loadRow is a load in the history.
type loadRow struct {
	At       time.Time
	LoadID   string
	Sequence uint64
	Amount   money.Fen
	// Balance is the wallet after the load, when this computer logged it.
	Balance *money.Fen
	Status  string
	Note    string
}

// historyLoads lists the customer's loads newest first: GridPay's records
// (every key, every computer; the status is theirs) joined with this
// computer's signed log (the wallet's balance after each load) and the
// key's last attempt. problem says why the log does not verify; a load
// list GridPay could not give is a problem too, and the log still shows.
func (s *uiServer) historyLoads(ctx context.Context, ks *uiSession) (rows []loadRow, problem string) {
	entries, ok, problem := readWalletLog(s.a.walletLogPath(ks.key.TokenSerial), ks.key.Leaf)
	if ok {
		problem = ""
	}
	byID := map[string]int{}
	add := func(r loadRow) {
		if i, seen := byID[r.LoadID]; seen {
			// GridPay's record came first: keep its status, add what
			// this computer knows.
			if rows[i].Balance == nil {
				rows[i].Balance = r.Balance
			}
			if rows[i].Note == "" {
				rows[i].Note = r.Note
			}
			return
		}
		byID[r.LoadID] = len(rows)
		rows = append(rows, r)
	}
	var list api.LoadList
	if err := ks.gw.get(ctx, api.PathLoads, nil, &list); err != nil {
		problem = strings.TrimSpace(problem + " " + err.Error())
	}
	for _, l := range list.Items {
		r := loadRow{At: l.Created, LoadID: l.LoadID, Sequence: l.Sequence, Amount: l.Amount, Note: l.Reason}
		switch l.Status {
		case "confirmed":
			r.Status = histLoaded
		case "refunded", "rejected":
			r.Status = histRefused
		default:
			r.Status = histPending
		}
		add(r)
	}
	for _, e := range entries {
		bal := e.Balance
		row := loadRow{At: e.At, LoadID: e.LoadID, Sequence: e.Sequence, Amount: e.Amount, Balance: &bal, Note: e.Note}
		switch e.Kind {
		case logLoad:
			row.Status = histLoaded
		case logLoadRefused:
			row.Status = histRefused
		default:
			continue
		}
		add(row)
	}
	if wal, err := s.readKeyWallet(ctx, ks); err == nil {
		if at := wal.rec.Attempt; at != nil && (at.Outcome == attemptSent || at.Outcome == attemptAbandoned) {
			row := loadRow{At: at.Started, LoadID: at.LoadID, Sequence: at.Sequence, Amount: at.Amount, Status: histPending}
			if at.Outcome == attemptAbandoned {
				row.Status, row.Note = histRefused, "abandoned: no allow arrived"
			}
			add(row)
		}
	}
	slices.SortStableFunc(rows, func(a, b loadRow) int {
		if c := b.At.Compare(a.At); c != 0 {
			return c
		}
		return cmp.Compare(b.Sequence, a.Sequence)
	})
	return rows, problem
}

// matchLoad applies the history's filters to a load.
func matchLoad(l loadRow, from, to platform.Date, q, status string) bool {
	if status != "" && l.Status != status {
		return false
	}
	d := platform.DateOf(l.At)
	if from != "" && d < from || to != "" && d > to {
		return false
	}
	return q == "" || strings.Contains(strings.ToLower(l.LoadID), strings.ToLower(q))
}

func (p page) HistStatus(st string) string { return p.T("hist.load." + st) }
