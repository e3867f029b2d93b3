package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/protocol"
)

// Passing funds on to the prepaid meter card (patent CN101211451A, claims
// 5–9 and 16–17). In development the card is a second SoftHSM2 token. At
// issuance ("client card issue") the card and the USB key are bound to
// each other, each storing the other's identifier and public key:
//
//   - on the card, public object "card-identity": the card number, the
//     card's token serial, the USB key's serial and public key, the card's
//     public key (its key pair "gridpay-card" is generated on the card);
//   - on the card, private object "card-purse" (behind the card's PIN):
//     the balance and the IDs of the last transfers it took;
//   - on the USB key, private object "meter-card": the card number, the
//     card's serial and public key.
//
// Mutual authentication before any transfer: the identifiers are compared
// both ways (the card names this USB key, the key names this card), then
// each side signs a fresh random challenge with its own key and the
// signature is checked with the public key the other side stored at
// issuance. A SoftHSM2 token checks nothing by itself, so the client
// performs the card's side of the checks too; a real card would do its
// part inside.
//
// A transfer moves money from the wallet to the card in three writes,
// each atomic on its token (hsm.Token.ReplaceData):
//
//  1. prepare, on the USB key: the wallet's spending grows by the amount and
//     a pending marker (transfer ID, amount, card) is written with it;
//  2. apply, on the card: the balance grows by the amount and the transfer
//     ID joins the card's list of transfers taken;
//  3. commit, on the USB key: the marker is cleared.
//
// A crash between 1 and 2 leaves the marker and a card without the ID: the
// next card operation undoes step 1. A crash between 2 and 3 leaves the
// marker and a card with the ID: the next card operation commits. So the
// wallet and the card always add up to what they held before, and no
// transfer is lost or taken twice. While a transfer is pending, no load is
// made (a load would rebuild the wallet's state under it).
const (
	cardIdentityLabel = "card-identity"
	cardPurseLabel    = "card-purse"
	cardBindingLabel  = "meter-card"
	cardKeyLabel      = "gridpay-card"
	cardFormat        = 1
	// cardAppliedKept is how many transfer IDs a card remembers; one
	// pending transfer at a time needs only the last.
	cardAppliedKept = 16
)

// cardFaultEnv names test faults of the transfer: crash-after-prepare,
// crash-after-card (the process stops between two writes, as a crash or a
// card pulled out would).
const cardFaultEnv = "GRIDPAY_TEST_CARD_FAULT"

func cardFault(name string) bool {
	return slices.Contains(strings.Split(os.Getenv(cardFaultEnv), ","), name)
}

// cardIdentity is the card's public identity object.
type cardIdentity struct {
	Version    int       `json:"v"`
	CardNumber string    `json:"card_number"`
	CardSerial string    `json:"card_serial"`
	KeySerial  string    `json:"key_serial"`
	KeyPublic  []byte    `json:"key_public"`  // PKIX, the bound USB key's
	CardPublic []byte    `json:"card_public"` // PKIX
	IssuedAt   time.Time `json:"issued_at"`
}

// cardPurse is the card's balance.
type cardPurse struct {
	Version   int       `json:"v"`
	Balance   money.Fen `json:"balance"`
	Applied   []string  `json:"applied"`
	UpdatedAt time.Time `json:"updated_at"`
}

// cardBinding is the USB key's record of its card.
type cardBinding struct {
	Version    int       `json:"v"`
	CardNumber string    `json:"card_number"`
	CardSerial string    `json:"card_serial"`
	CardPublic []byte    `json:"card_public"`
	IssuedAt   time.Time `json:"issued_at"`
}

// pendingTransfer is the wallet's marker of a transfer in progress.
type pendingTransfer struct {
	ID         string    `json:"id"`
	Amount     money.Fen `json:"amount"`
	CardSerial string    `json:"card_serial"`
	Started    time.Time `json:"started"`
}

// cardToken is a meter card: its data objects and its key.
type cardToken interface {
	keyObjects
	Serial() string
	CardSigner(ctx context.Context) (crypto.Signer, error)
	GenerateCardKey(ctx context.Context) (crypto.Signer, error)
	Close() error
}

// hsmCard is a meter card on a PKCS#11 token.
type hsmCard struct{ *hsm.Token }

func (c hsmCard) Serial() string { return c.Info().Serial }

func (c hsmCard) CardSigner(ctx context.Context) (crypto.Signer, error) {
	return c.Signer(ctx, hsm.KeyRef{Label: cardKeyLabel})
}

func (c hsmCard) GenerateCardKey(ctx context.Context) (crypto.Signer, error) {
	return c.GenerateECDSAKey(ctx, cardKeyLabel, nil)
}

// openCard opens the meter card through the USB key's module: with its
// PIN, or without (nil) for its public objects only. Tests replace it.
var openCard = func(a *app, sel hsm.Selector, pin []byte) (cardToken, error) {
	mod, err := hsm.OpenModule(a.cfg.Token.Module)
	if err != nil {
		return nil, err
	}
	defer mod.Close()
	tok, err := mod.OpenToken(sel, pin, hsm.Options{NoLogin: pin == nil, PoolSize: 1, Logger: a.log})
	if err != nil {
		return nil, err
	}
	return hsmCard{tok}, nil
}

var cardNumberPattern = regexp.MustCompile(`^[0-9][0-9-]{5,31}$`)

// maskCard shows the last four digits of a card number only.
func maskCard(n string) string {
	if len(n) <= 4 {
		return "****"
	}
	return "****" + n[len(n)-4:]
}

func readJSONObject(ctx context.Context, o keyObjects, label string, v any) (bool, error) {
	b, found, err := readObject(ctx, o, label)
	if err != nil || !found {
		return found, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return true, fmt.Errorf("object %q does not parse: %w", label, err)
	}
	return true, nil
}

func writeJSONObject(ctx context.Context, o keyObjects, label string, private bool, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeObject(ctx, o, label, private, b)
}

func readCardBinding(ctx context.Context, o keyObjects) (cardBinding, bool, error) {
	var b cardBinding
	found, err := readJSONObject(ctx, o, cardBindingLabel, &b)
	if err == nil && found && b.Version != cardFormat {
		err = fmt.Errorf("the meter card binding on the key is of format %d, this program reads %d", b.Version, cardFormat)
	}
	return b, found, err
}

// cardFlags are the flags every card command takes.
type cardFlags struct {
	label, serial, pinFile string
	// pin is the card's PIN when the window's form gave it (the CLI reads
	// it from pinFile, the environment or the terminal). It is zeroed once
	// the card has it.
	pin []byte
}

func (f cardFlags) selector() (hsm.Selector, error) {
	if f.label == "" && f.serial == "" {
		return hsm.Selector{}, cli.WithCode(cli.ExitUsage, errors.New("name the meter card with --card-label or --card-serial"))
	}
	return hsm.Selector{Label: f.label, Serial: f.serial}, nil
}

// cardPIN reads the card's PIN: --card-pin-file, GRIDPAY_CARD_PIN, or a
// prompt on the terminal.
func (a *app) cardPIN(ctx context.Context, f cardFlags) ([]byte, error) {
	var src hsm.PINSource
	switch {
	case f.pin != nil:
		return f.pin, nil
	case f.pinFile != "":
		src = hsm.PINFromFile(f.pinFile)
	case os.Getenv("GRIDPAY_CARD_PIN") != "":
		src = hsm.PINFromEnv("GRIDPAY_CARD_PIN")
	default:
		pin, err := promptPIN(ctx, hsm.PINFromPrompt().WithPrompt("PIN of the meter card: "))
		if errors.Is(err, hsm.ErrNoPINSource) {
			return nil, fail(cli.ExitConfig, err, "the card's PIN is needed and stdin is not a terminal: give --card-pin-file or GRIDPAY_CARD_PIN")
		}
		return pin, err
	}
	pin, err := src.Read()
	if err != nil {
		return nil, fail(cli.ExitConfig, err, "reading the card's PIN: %v", err)
	}
	return pin, nil
}

func (a *app) openCardWithPIN(ctx context.Context, f cardFlags, sel hsm.Selector) (cardToken, error) {
	pin, err := a.cardPIN(ctx, f)
	if err != nil {
		return nil, err
	}
	card, err := openCard(a, sel, pin)
	hsm.Zero(pin)
	switch {
	case errors.Is(err, hsm.ErrWrongPIN):
		return nil, fail(cli.ExitAuth, err, "wrong PIN for the meter card")
	case errors.Is(err, hsm.ErrTokenAbsent):
		return nil, fail(cli.ExitUnavailable, err, "no meter card with %s is present: bring the card to the reader", sel)
	case err != nil:
		return nil, fail(cli.ExitUnavailable, err, "cannot open the meter card: %v", err)
	}
	return card, nil
}

// authDigest is what one side of the mutual authentication signs: the
// domain, both identifiers and the other side's challenge.
func authDigest(domain, self, peer string, challenge []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(domain), []byte(self), []byte(peer), challenge} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// challengeResponse has signer sign a fresh challenge and checks the
// signature with the public key the other side stored (PKIX).
func challengeResponse(signer crypto.Signer, stored []byte, domain, self, peer string) error {
	pub, err := x509.ParsePKIXPublicKey(stored)
	if err != nil {
		return fmt.Errorf("the stored public key does not parse: %w", err)
	}
	challenge := protocol.NewChallenge()
	digest := authDigest(domain, self, peer, challenge)
	sig, err := signer.Sign(rand.Reader, digest, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing the challenge: %w", err)
	}
	return protocol.VerifyDigest(&x509.Certificate{PublicKey: pub}, digest, sig)
}

// boundCard is the meter card after mutual authentication, opened with
// its PIN.
type boundCard struct {
	card    cardToken
	ident   cardIdentity
	binding cardBinding
	purse   cardPurse
}

// openBoundCard checks that the card in the reader is the one bound to the
// USB key and the other way round (identifiers, then a challenge each side
// signs), asks for the card's PIN and reads its balance.
func (a *app) openBoundCard(ctx context.Context, s *session, o keyObjects, f cardFlags) (*boundCard, error) {
	sel, err := f.selector()
	if err != nil {
		return nil, err
	}
	b, found, err := readCardBinding(ctx, o)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fail(cli.ExitNotFound, nil, "no meter card is bound to this USB key (the power company binds one: client card issue)")
	}
	// Identifiers first, from the card's public object, before its PIN.
	pub, err := openCard(a, sel, nil)
	if err != nil {
		return nil, fail(cli.ExitUnavailable, err, "no meter card with %s can be read: bring the card to the reader", sel)
	}
	var ident cardIdentity
	found, err = readJSONObject(ctx, pub, cardIdentityLabel, &ident)
	serial := pub.Serial()
	pub.Close()
	switch {
	case err != nil:
		return nil, fail(cli.ExitAuth, err, "the meter card's identity cannot be read: %v", err)
	case !found:
		return nil, fail(cli.ExitAuth, nil, "this card was never issued as a GridPay meter card")
	case ident.CardSerial != serial:
		return nil, fail(cli.ExitAuth, nil, "this card carries another card's identity")
	case ident.CardNumber != b.CardNumber || ident.CardSerial != b.CardSerial:
		return nil, fail(cli.ExitAuth, nil, "this card is not the meter card bound to this USB key (that is card %s)", maskCard(b.CardNumber))
	case ident.KeySerial != s.key.TokenSerial:
		return nil, fail(cli.ExitAuth, nil, "this meter card is bound to another USB key")
	}
	card, err := a.openCardWithPIN(ctx, f, sel)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			card.Close()
		}
	}()
	cardSigner, err := card.CardSigner(ctx)
	if err != nil {
		return nil, fail(cli.ExitAuth, err, "the meter card holds no key")
	}
	if err := challengeResponse(cardSigner, b.CardPublic, "GridPay meter card auth v1", b.CardNumber, s.key.TokenSerial); err != nil {
		return nil, fail(cli.ExitAuth, err, "the meter card failed authentication: it is not the card bound to this USB key")
	}
	if err := challengeResponse(s.key.Signer, ident.KeyPublic, "GridPay USB key auth v1", s.key.TokenSerial, b.CardNumber); err != nil {
		return nil, fail(cli.ExitAuth, err, "this USB key failed the meter card's authentication")
	}
	var purse cardPurse
	found, err = readJSONObject(ctx, card, cardPurseLabel, &purse)
	switch {
	case err != nil:
		return nil, fail(cli.ExitError, err, "the meter card's balance cannot be read: %v", err)
	case !found || purse.Version != cardFormat || purse.Balance < 0:
		return nil, fail(cli.ExitError, nil, "the meter card holds no valid balance")
	}
	ok = true
	return &boundCard{card: card, ident: ident, binding: b, purse: purse}, nil
}

// recoverTransfer finishes a transfer a crash interrupted: committed if
// the card took it, undone if not. It returns what it did ("" if
// nothing was pending).
func recoverTransfer(ctx context.Context, o keyObjects, w *wallet, bc *boundCard) (string, error) {
	t := w.rec.Transfer
	if t == nil {
		return "", nil
	}
	if t.CardSerial != bc.ident.CardSerial {
		return "", fail(cli.ExitConflict, nil, "a transfer of %s to another meter card is pending: bring that card to the reader", t.Amount.Display())
	}
	did := "completed"
	if slices.Contains(bc.purse.Applied, t.ID) {
		w.rec.Transfers++
	} else {
		if w.rec.Spent < t.Amount {
			return "", fail(cli.ExitError, nil, "the pending transfer does not match the wallet; please contact the power company")
		}
		w.rec.Spent -= t.Amount
		did = "undone"
	}
	w.rec.Transfer = nil
	if err := writeWallet(ctx, o, w.rec); err != nil {
		return "", err
	}
	return did, nil
}

// cardView is what the card commands print.
type cardView struct {
	Card          string    `json:"card"` // masked number
	CardSerial    string    `json:"card_serial"`
	KeySerial     string    `json:"key_serial"`
	CardBalance   money.Fen `json:"card_balance"`
	WalletBalance money.Fen `json:"wallet_balance"`
	// Total is wallet and card together: a transfer never changes it.
	Total       money.Fen `json:"total"`
	Transferred money.Fen `json:"transferred,omitempty"`
	// Recovered says what happened to a transfer a crash had interrupted:
	// completed or undone.
	Recovered string `json:"recovered,omitempty"`
}

func (a *app) cardCommand() *cobra.Command {
	var f cardFlags
	cmd := &cobra.Command{
		Use:   "card",
		Short: "The prepaid meter card: bind it to the USB key, read its balance, pass funds on from the wallet",
		Long: `card works with your prepaid electricity meter card (a second PKCS#11 token: a
SoftHSM2 token in development), next to your USB key:

  client card issue    --card-label "Meter card" --card-number 3301-0001-0007   (the power company, at issuance)
  client card balance  --card-label "Meter card"
  client card transfer --card-label "Meter card" --amount 200.00

The USB key and the card authenticate each other first (each checks the
other's identifier stored at issuance, then a challenge each signs with its own
key); the card's balance is read with the card's PIN (--card-pin-file,
GRIDPAY_CARD_PIN, or a prompt). A transfer lowers the wallet and raises the card
by the same amount, safely against a crash at any point.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.label, "card-label", "", "label of the meter card's token")
	pf.StringVar(&f.serial, "card-serial", "", "serial number of the meter card's token")
	pf.StringVar(&f.pinFile, "card-pin-file", "", "file holding the meter card's PIN (else GRIDPAY_CARD_PIN, else a prompt)")
	cmd.AddCommand(a.cardIssueCommand(&f), a.cardBalanceCommand(&f), a.cardTransferCommand(&f))
	return cmd
}

func (a *app) cardIssueCommand(f *cardFlags) *cobra.Command {
	var number string
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Bind a blank meter card and the USB key to each other (the power company, at issuance)",
		Long: `issue makes a blank, initialised token (adminctl token init) the meter card of this
USB key: a key pair is generated on the card, the card stores the card number, the
USB key's serial and public key, and a balance of zero behind its PIN; the USB key
stores the card number, the card's serial and public key. Running it again for the
same card and key completes an interrupted issuance.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cardNumberPattern.MatchString(number) {
				return cli.WithCode(cli.ExitUsage, errors.New("--card-number must be 6 to 32 digits and '-'"))
			}
			sel, err := f.selector()
			if err != nil {
				return err
			}
			return a.withSession(cmd.Context(), func(ctx context.Context, s *session) error {
				v, err := a.bindCard(ctx, s, *f, sel, number)
				if err != nil {
					return err
				}
				return a.out.Print(v, func(w io.Writer) {
					fmt.Fprintf(w, "Meter card %s (token %s) and USB key %s are bound to each other.\n", v.Card, v.CardSerial, v.KeySerial)
				})
			})
		},
	}
	cmd.Flags().StringVar(&number, "card-number", "", "the meter card's number (printed on the card)")
	return cmd
}

// issueCard writes a blank card's key, identity and empty purse.
// bindCard makes the blank card sel the meter card of the session's key
// (or completes an interrupted issuance): client card issue and the
// window's form.
func (a *app) bindCard(ctx context.Context, s *session, f cardFlags, sel hsm.Selector, number string) (cardView, error) {
	if !cardNumberPattern.MatchString(number) {
		return cardView{}, fail(cli.ExitUsage, nil, "the card number must be 6 to 32 digits and '-'")
	}
	o, closeObjs, err := openKeyObjects(a, s.key)
	if err != nil {
		return cardView{}, fail(cli.ExitUnavailable, err, "%v", err)
	}
	defer closeObjs()
	if b, found, err := readCardBinding(ctx, o); err != nil {
		return cardView{}, err
	} else if found && b.CardNumber != number {
		return cardView{}, fail(cli.ExitConflict, nil, "this USB key is bound to meter card %s already", maskCard(b.CardNumber))
	}
	card, err := a.openCardWithPIN(ctx, f, sel)
	if err != nil {
		return cardView{}, err
	}
	defer card.Close()
	var ident cardIdentity
	found, err := readJSONObject(ctx, card, cardIdentityLabel, &ident)
	if err != nil {
		return cardView{}, err
	}
	if found && (ident.CardNumber != number || ident.KeySerial != s.key.TokenSerial) {
		return cardView{}, fail(cli.ExitConflict, nil, "this card was issued already, to another USB key or under another number")
	}
	if !found {
		ident, err = a.issueCard(ctx, s, card, number)
		if err != nil {
			return cardView{}, err
		}
	}
	b := cardBinding{Version: cardFormat, CardNumber: number, CardSerial: ident.CardSerial, CardPublic: ident.CardPublic, IssuedAt: ident.IssuedAt}
	if err := writeJSONObject(ctx, o, cardBindingLabel, true, b); err != nil {
		return cardView{}, fmt.Errorf("writing the card binding on the USB key: %w", err)
	}
	return cardView{Card: maskCard(number), CardSerial: ident.CardSerial, KeySerial: s.key.TokenSerial}, nil
}

func (a *app) issueCard(ctx context.Context, s *session, card cardToken, number string) (cardIdentity, error) {
	signer, err := card.GenerateCardKey(ctx)
	if err != nil {
		return cardIdentity{}, fmt.Errorf("generating the card's key: %w", err)
	}
	cardPub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return cardIdentity{}, err
	}
	keyPub, err := x509.MarshalPKIXPublicKey(s.key.Signer.Public())
	if err != nil {
		return cardIdentity{}, err
	}
	now := a.now().UTC()
	// The purse first: a card with an identity always has a balance.
	if err := writeJSONObject(ctx, card, cardPurseLabel, true, cardPurse{Version: cardFormat, Balance: 0, Applied: []string{}, UpdatedAt: now}); err != nil {
		return cardIdentity{}, fmt.Errorf("writing the card's balance: %w", err)
	}
	ident := cardIdentity{Version: cardFormat, CardNumber: number, CardSerial: card.Serial(), KeySerial: s.key.TokenSerial,
		KeyPublic: keyPub, CardPublic: cardPub, IssuedAt: now}
	if err := writeJSONObject(ctx, card, cardIdentityLabel, false, ident); err != nil {
		return cardIdentity{}, fmt.Errorf("writing the card's identity: %w", err)
	}
	return ident, nil
}

func (a *app) cardBalanceCommand(f *cardFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "balance",
		Short: "Authenticate the meter card and show its balance beside the wallet's",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withCard(cmd.Context(), *f, func(ctx context.Context, s *session, o keyObjects, w *wallet, bc *boundCard, v *cardView) error {
				return a.out.Print(v, func(out io.Writer) { renderCard(out, *v) })
			})
		},
	}
}

// cardFunc works on the wallet and the authenticated card.
type cardFunc func(ctx context.Context, s *session, o keyObjects, w *wallet, bc *boundCard, v *cardView) error

// withCard opens a session, the wallet and the authenticated card,
// finishes an interrupted transfer, and runs fn.
func (a *app) withCard(ctx context.Context, f cardFlags, fn cardFunc) error {
	if _, err := f.selector(); err != nil {
		return err
	}
	return a.withSession(ctx, func(ctx context.Context, s *session) error {
		return a.withCardOn(ctx, s, f, fn)
	})
}

// withCardOn is withCard on an open session (the window's).
func (a *app) withCardOn(ctx context.Context, s *session, f cardFlags, fn cardFunc) error {
	o, closeObjs, err := openKeyObjects(a, s.key)
	if err != nil {
		return fail(cli.ExitUnavailable, err, "%v", err)
	}
	defer closeObjs()
	unlock, err := a.lockWallet(s.key.TokenSerial)
	if err != nil {
		return err
	}
	defer unlock()
	roots, err := loadRoots(a.cfg.CAFile)
	if err != nil {
		return err
	}
	w, err := readWallet(ctx, o, roots, s.key.TokenSerial)
	if err != nil {
		return fail(cli.ExitAuth, err, "%v; please contact the power company", err)
	}
	bc, err := a.openBoundCard(ctx, s, o, f)
	if err != nil {
		return err
	}
	defer bc.card.Close()
	pending := w.rec.Transfer
	did, err := recoverTransfer(ctx, o, &w, bc)
	if err != nil {
		return err
	}
	if did != "" {
		kind := logTransfer
		if did == "undone" {
			kind = logTransferUndone
		}
		a.appendWalletLog(s, walletLogEntry{At: a.now(), Kind: kind, Amount: pending.Amount, Balance: w.Balance(), Card: maskCard(bc.ident.CardNumber),
			Note: "interrupted transfer " + did})
		a.warn("an interrupted transfer of %s to the meter card was %s", pending.Amount.Display(), did)
	}
	v := &cardView{Card: maskCard(bc.ident.CardNumber), CardSerial: bc.ident.CardSerial, KeySerial: s.key.TokenSerial,
		CardBalance: bc.purse.Balance, WalletBalance: w.Balance(), Total: bc.purse.Balance + w.Balance(), Recovered: did}
	return fn(ctx, s, o, &w, bc, v)
}

func (a *app) cardTransferCommand(f *cardFlags) *cobra.Command {
	var amountText string
	var yes bool
	cmd := &cobra.Command{
		Use:   "transfer",
		Short: "Pass funds from the USB key's wallet on to the meter card",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			amount, err := money.ParseYuan(amountText)
			if err != nil || amount <= 0 {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("--amount: %q is not a positive amount of yuan", amountText))
			}
			return a.withCard(cmd.Context(), *f, func(ctx context.Context, s *session, o keyObjects, w *wallet, bc *boundCard, v *cardView) error {
				confirm := func(question string) (bool, error) {
					if yes {
						return true, nil
					}
					return a.confirm(ctx, question, a.cfg.Load.ConfirmTimeout)
				}
				if err := a.cardTransfer(ctx, s, o, w, bc, v, amount, confirm); err != nil {
					return err
				}
				return a.out.Print(v, func(out io.Writer) {
					fmt.Fprintf(out, "Moved %s to meter card %s.\n", amount.Display(), v.Card)
					renderCard(out, *v)
				})
			})
		},
	}
	cmd.Flags().StringVar(&amountText, "amount", "", "amount of yuan to move onto the card, e.g. 200.00")
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return cmd
}

// cardTransfer moves amount from the wallet to the authenticated card,
// once confirm agrees, and updates v to the balances after.
func (a *app) cardTransfer(ctx context.Context, s *session, o keyObjects, w *wallet, bc *boundCard, v *cardView, amount money.Fen,
	confirm func(question string) (bool, error)) error {
	if amount > w.Balance() {
		return fail(cli.ExitError, errWalletShort, "the wallet holds %s, less than %s", w.Balance().Display(), amount.Display())
	}
	ok, err := confirm(fmt.Sprintf("Move %s from the wallet (%s) to meter card %s (%s)?", amount.Display(), w.Balance().Display(),
		v.Card, bc.purse.Balance.Display()))
	if err != nil {
		return err
	}
	if !ok {
		return fail(cli.ExitError, nil, "not confirmed: nothing was moved")
	}
	if err := a.transfer(ctx, o, w, bc, amount); err != nil {
		return err
	}
	a.appendWalletLog(s, walletLogEntry{At: a.now(), Kind: logTransfer, Amount: amount, Balance: w.Balance(), Card: v.Card})
	v.CardBalance, v.WalletBalance, v.Transferred = bc.purse.Balance, w.Balance(), amount
	if v.CardBalance+v.WalletBalance != v.Total {
		return fail(cli.ExitError, nil, "the wallet and the card no longer add up; please contact the power company")
	}
	return nil
}

// errWalletShort means a transfer asked for more than the wallet holds.
var errWalletShort = errors.New("the wallet holds less than the amount")

// transfer makes the three writes (see the top of this file).
func (a *app) transfer(ctx context.Context, o keyObjects, w *wallet, bc *boundCard, amount money.Fen) error {
	t := &pendingTransfer{ID: randomID(16), Amount: amount, CardSerial: bc.ident.CardSerial, Started: a.now().UTC()}
	w.rec.Transfer = t
	w.rec.Spent += amount
	if err := writeWallet(ctx, o, w.rec); err != nil {
		return err
	}
	if cardFault("crash-after-prepare") {
		return fail(cli.ExitError, nil, "test fault: stopped after the wallet's write")
	}
	purse := bc.purse
	purse.Balance += amount
	purse.Applied = append(slices.Clone(purse.Applied), t.ID)
	if n := len(purse.Applied); n > cardAppliedKept {
		purse.Applied = purse.Applied[n-cardAppliedKept:]
	}
	purse.UpdatedAt = a.now().UTC()
	if err := writeJSONObject(ctx, bc.card, cardPurseLabel, true, purse); err != nil {
		return fail(cli.ExitError, err, "the card could not be written (%v); the transfer is finished or undone at the next card operation", err)
	}
	bc.purse = purse
	if cardFault("crash-after-card") {
		return fail(cli.ExitError, nil, "test fault: stopped after the card's write")
	}
	w.rec.Transfer = nil
	w.rec.Transfers++
	return writeWallet(ctx, o, w.rec)
}

func renderCard(w io.Writer, v cardView) {
	fmt.Fprintf(w, "Meter card %s (token %s), bound to USB key %s\n", v.Card, v.CardSerial, v.KeySerial)
	fmt.Fprintf(w, "  card      %s\n", v.CardBalance.Display())
	fmt.Fprintf(w, "  wallet    %s\n", v.WalletBalance.Display())
	fmt.Fprintf(w, "  together  %s\n", v.Total.Display())
	if v.Recovered != "" {
		fmt.Fprintf(w, "  an interrupted transfer was %s\n", v.Recovered)
	}
}
