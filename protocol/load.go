package protocol

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gridpay/gridpay/money"
)

// The signed load exchange (patent CN101211451A, 圈存) moves prepaid funds
// from the customer's account at the power company onto the electronic
// wallet of the USB key, in three signed messages:
//
//  1. the load request, signed by the USB key: who asks (customer, account),
//     what the wallet holds now, how much to load;
//  2. the load-allow command, signed in GridPay's HSM by the load signer (a
//     services-CA key of service "load"): host date and time, the amount, the
//     sequence number it authorises, its expiry, and the new wallet state
//     with GridPay's own signature over it;
//  3. the load report, signed by the USB key: the execution receipt (the
//     wallet now holds the new state), an error report (the key refused the
//     allow), or, at the start of any later session, the wallet's state as
//     it is (so that a load whose receipt never arrived is settled by the
//     sequence number, never by guessing).
//
// The wallet state is a fourth encoding: GridPay signs it, the USB key keeps
// it with that signature in its wallet object, and nobody can raise a balance
// without GridPay's signature.
//
// # Encoding, version 1
//
// Every message travels as bytes and the signature covers exactly those
// bytes. A "string" is one length byte and that many bytes of ASCII; a
// "blob" is two length bytes (big-endian) and that many bytes; integers are
// big-endian, 8 bytes unless said otherwise; times are Unix seconds (UTC) in
// the years 2000 to 9999; amounts are fen, 0 to money.Max. The three
// messages start with the same header:
//
//	version        1 byte: 1
//	type           1 byte: 1 load request, 2 load allow, 3 load report
//	token serial   string: 1–64 letters, digits, '.', '-', starting with a letter or digit
//	cert serial    string: 1–64 lower-case hex digits, the signing certificate's serial
//	key version    1 byte: 1 (the version of the signing key's scheme)
//	algorithm      1 byte: 1 ECDSA P-256/SHA-256, 2 RSA PKCS #1 v1.5/SHA-256, 3 RSA-PSS/SHA-256
//	nonce          1 length byte (16–32) and that many random bytes
//	timestamp      when it was signed; for the allow, the host date and time
//	sequence       the token's online transaction sequence number (see each message)
//
// The load request (type 1; sequence: the number this load takes, above
// every number the token used before) continues with
//
//	customer ID     string: as in the certificate
//	account         string: 1–64 letters, digits, '-', '.': the platform account debited
//	wallet balance  the balance the wallet holds now
//	wallet sequence the sequence of the wallet's state (the last load applied), below sequence; 0: no wallet yet
//	wallet load     string: the load ID of that state, empty exactly when wallet sequence is 0
//	amount          1 fen to money.Max, with wallet balance + amount at most money.Max
//	currency        string: "CNY"
//
// The load allow (type 2; sequence: the number it authorises) continues with
//
//	customer ID     string
//	load ID         string: LoadID(token serial, sequence)
//	amount          1 fen to money.Max
//	expires         after the timestamp: the key refuses the allow from then on
//	prev sequence   the wallet sequence the allow applies on top of, below sequence
//	state           blob: the new wallet state (below), for this token, customer,
//	                sequence and load ID, signed by the same key as the allow
//	state signature blob: 1–1024 bytes
//
// The load report (type 3; sequence: the wallet's sequence now) continues with
//
//	kind            1 byte: 1 receipt, 2 error report, 3 state report
//	load sequence   the load reported on (receipt, error); 0 for a state report
//	load ID         string: LoadID(token serial, load sequence); empty for a state report
//	wallet balance  the balance the wallet holds now, at most the state's
//	attempt         the highest sequence the token has asked with, at least sequence
//	state           blob: the wallet state the key holds; empty exactly when sequence is 0
//	error code      1 byte: an ErrorCode for an error report, else 0
//	error text      string: printable ASCII, empty unless an error report
//
// A receipt's sequence is its load sequence: the wallet took that load.
//
// The wallet state (its own version byte, no header) is
//
//	version         1 byte: 1
//	token serial    string
//	customer ID     string
//	sequence        at least 1: the load this state is the result of
//	balance         the wallet balance after that load
//	last load ID    string: LoadID(token serial, sequence)
//	signed at       time
//	signer serial   string: the signing certificate's serial (hex)
//	algorithm       1 byte, as in the header
//
// Nothing may follow the last field, and every encoding has a maximum size
// (MaxLoadRequestSize...). Decoding refuses an unknown version or type, a
// truncated or oversize encoding, trailing bytes and any field that breaks
// its rule, with a *LoadMessageError naming the field; decoding what was
// encoded gives it back, and encoding what was decoded gives the same bytes.
//
// # Signatures
//
// Each message is signed over SHA-256 of its domain and its encoding, each
// preceded by its length as 4 bytes big-endian (the construction of the
// payment instruction), with the domains "GridPay load request v1",
// "GridPay load allow v1", "GridPay load report v1" and "GridPay wallet
// state v1": no signature of one kind passes for another. The algorithm
// byte says how; the verifier insists on exactly that algorithm and a key of
// the matching type. ECDSA signatures are ASN.1 DER.

// LoadProtocolVersion is the version of the load messages this package
// writes and reads.
const LoadProtocolVersion = 1

// WalletStateVersion is the version of the wallet state encoding.
const WalletStateVersion = 1

// KeyVersion is the key version every version-1 message carries.
const KeyVersion = 1

// LoadMessageType is the type byte of a load message.
type LoadMessageType uint8

// Types of load message.
const (
	TypeLoadRequest LoadMessageType = 1
	TypeLoadAllow   LoadMessageType = 2
	TypeLoadReport  LoadMessageType = 3
)

func (t LoadMessageType) String() string {
	switch t {
	case TypeLoadRequest:
		return "load request"
	case TypeLoadAllow:
		return "load allow"
	case TypeLoadReport:
		return "load report"
	}
	return "load message type " + strconv.Itoa(int(t))
}

// Algorithm says how a load message or wallet state is signed.
type Algorithm uint8

// Signature algorithms.
const (
	AlgECDSAP256SHA256 Algorithm = 1
	AlgRSAPKCS1SHA256  Algorithm = 2
	AlgRSAPSSSHA256    Algorithm = 3
)

func (a Algorithm) String() string {
	switch a {
	case AlgECDSAP256SHA256:
		return "ECDSA P-256 SHA-256"
	case AlgRSAPKCS1SHA256:
		return "RSA PKCS#1 v1.5 SHA-256"
	case AlgRSAPSSSHA256:
		return "RSA-PSS SHA-256"
	}
	return "algorithm " + strconv.Itoa(int(a))
}

// AlgorithmFor picks the algorithm a key signs load messages with: ECDSA
// P-256 keys sign with AlgECDSAP256SHA256, RSA keys with
// AlgRSAPKCS1SHA256.
func AlgorithmFor(pub crypto.PublicKey) (Algorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return 0, fmt.Errorf("protocol: ECDSA key on %s; load messages use P-256", k.Curve.Params().Name)
		}
		return AlgECDSAP256SHA256, nil
	case *rsa.PublicKey:
		return AlgRSAPKCS1SHA256, nil
	}
	return 0, fmt.Errorf("protocol: unsupported key type %T", pub)
}

// SignerOpts are the options to pass crypto.Signer.Sign for the algorithm.
func (a Algorithm) SignerOpts() crypto.SignerOpts {
	if a == AlgRSAPSSSHA256 {
		return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	}
	return crypto.SHA256
}

// Sign signs a digest of a load message or wallet state with signer, by
// the algorithm its key calls for (AlgorithmFor).
func Sign(signer crypto.Signer, alg Algorithm, digest []byte) ([]byte, error) {
	want, err := AlgorithmFor(signer.Public())
	if err != nil {
		return nil, err
	}
	if want != alg && !(alg == AlgRSAPSSSHA256 && want == AlgRSAPKCS1SHA256) {
		return nil, fmt.Errorf("protocol: a %T cannot sign with %s", signer.Public(), alg)
	}
	return signer.Sign(rand.Reader, digest, alg.SignerOpts())
}

// verifyAlg checks sig over digest with pub by exactly the algorithm alg.
func verifyAlg(pub crypto.PublicKey, alg Algorithm, digest, sig []byte) error {
	switch alg {
	case AlgECDSAP256SHA256:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || k.Curve != elliptic.P256() {
			return fmt.Errorf("%w: %s with a %T", ErrWrongAlgorithm, alg, pub)
		}
		if ecdsa.VerifyASN1(k, digest, sig) {
			return nil
		}
	case AlgRSAPKCS1SHA256, AlgRSAPSSSHA256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s with a %T", ErrWrongAlgorithm, alg, pub)
		}
		if alg == AlgRSAPKCS1SHA256 && rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig) == nil {
			return nil
		}
		if alg == AlgRSAPSSSHA256 && rsa.VerifyPSS(k, crypto.SHA256, digest, sig, nil) == nil {
			return nil
		}
	default:
		return fmt.Errorf("%w: %s", ErrWrongAlgorithm, alg)
	}
	return ErrBadSignature
}

// Limits of the load messages.
const (
	MaxLoadRequestSize = 1024
	MaxLoadAllowSize   = 4096
	MaxLoadReportSize  = 2048
	MaxWalletStateSize = 512
	// MaxSignatureSize caps every signature: an RSA-4096 signature fits.
	MaxSignatureSize = 1024
	MaxLoadIDLen     = 96
	MaxErrorTextLen  = 200
)

// Signature domains.
const (
	loadRequestDomain = "GridPay load request v1"
	loadAllowDomain   = "GridPay load allow v1"
	loadReportDomain  = "GridPay load report v1"
	walletStateDomain = "GridPay wallet state v1"
)

// LoadID names a load: "load-<token serial>-<sequence>". The platform's
// prepaid debit is keyed by it (and its refund by it and ":refund"), so a
// load can never be debited or refunded twice.
func LoadID(tokenSerial string, sequence uint64) string {
	return "load-" + tokenSerial + "-" + strconv.FormatUint(sequence, 10)
}

// LoadHeader is what every load message carries first.
type LoadHeader struct {
	Version int
	Type    LoadMessageType
	// TokenSerial is the USB key the exchange is about.
	TokenSerial string
	// CertSerial is the serial (hex) of the certificate whose key signed
	// the message: the USB key's, or the load signer's for an allow.
	CertSerial string
	KeyVersion uint8
	Algorithm  Algorithm
	Nonce      []byte
	// Timestamp is when the message was signed, whole seconds, UTC; for an
	// allow, the host date and time.
	Timestamp time.Time
	// Sequence is the token's online transaction sequence number (each
	// message says which).
	Sequence uint64
}

// LoadRequest is the USB key's signed request to load funds.
type LoadRequest struct {
	LoadHeader
	CustomerID string
	// Account is the platform account number the amount is taken from.
	Account        string
	WalletBalance  money.Fen
	WalletSequence uint64
	WalletLastLoad string
	Amount         money.Fen
	Currency       string
}

// LoadAllow is GridPay's signed command allowing the key to credit its
// wallet.
type LoadAllow struct {
	LoadHeader
	CustomerID   string
	LoadID       string
	Amount       money.Fen
	Expires      time.Time
	PrevSequence uint64
	// State is the encoded new WalletState, StateSignature GridPay's
	// signature over its digest.
	State          []byte
	StateSignature []byte
}

// ReportKind says what a load report reports.
type ReportKind uint8

// Kinds of load report.
const (
	// ReportReceipt: the wallet took the load (the execution receipt).
	ReportReceipt ReportKind = 1
	// ReportError: the key refused the allow and will not apply it.
	ReportError ReportKind = 2
	// ReportState: the wallet as it is, sent at the start of a session.
	ReportState ReportKind = 3
)

func (k ReportKind) String() string {
	switch k {
	case ReportReceipt:
		return "receipt"
	case ReportError:
		return "error report"
	case ReportState:
		return "state report"
	}
	return "report kind " + strconv.Itoa(int(k))
}

// ErrorCode says why a key refused an allow.
type ErrorCode uint8

// Error codes of an error report.
const (
	ErrAllowSignature   ErrorCode = 1 // the allow or its state does not verify
	ErrAllowCertificate ErrorCode = 2 // the signer's certificate is not GridPay's load signer
	ErrAllowExpired     ErrorCode = 3 // the allow arrived after its expiry
	ErrAllowMismatch    ErrorCode = 4 // it allows something else than was asked
	ErrAllowClock       ErrorCode = 5 // the host time is too far from this computer's clock
	ErrAllowAbandoned   ErrorCode = 6 // the client gave up waiting for it
	maxErrorCode                  = ErrAllowAbandoned
)

func (c ErrorCode) String() string {
	switch c {
	case ErrAllowSignature:
		return "bad signature"
	case ErrAllowCertificate:
		return "bad signer certificate"
	case ErrAllowExpired:
		return "expired"
	case ErrAllowMismatch:
		return "does not match the request"
	case ErrAllowClock:
		return "clock"
	case ErrAllowAbandoned:
		return "abandoned"
	}
	return "error code " + strconv.Itoa(int(c))
}

// LoadReport is the USB key's signed report on its wallet.
type LoadReport struct {
	LoadHeader
	Kind          ReportKind
	LoadSequence  uint64
	LoadID        string
	WalletBalance money.Fen
	Attempt       uint64
	// State is the encoded WalletState the key holds (nil if none).
	State     []byte
	ErrorCode ErrorCode
	ErrorText string
}

// WalletState is the wallet of a USB key as GridPay signed it after a
// load.
type WalletState struct {
	Version      int
	TokenSerial  string
	CustomerID   string
	Sequence     uint64
	Balance      money.Fen
	LastLoadID   string
	SignedAt     time.Time
	SignerSerial string
	Algorithm    Algorithm
}

// ErrBadLoadMessage is matched (errors.Is) by every *LoadMessageError.
var ErrBadLoadMessage = errors.New("bad load message")

// LoadMessageError says which field of which load message is wrong.
type LoadMessageError struct {
	Message string // "load request", "wallet state"...
	Field   string
	Problem string
}

func (e *LoadMessageError) Error() string { return e.Message + ": " + e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrBadLoadMessage) true.
func (e *LoadMessageError) Is(target error) bool { return target == ErrBadLoadMessage }

var (
	// ErrUnsigned means a message came without a signature, or with one
	// of an impossible size.
	ErrUnsigned = errors.New("unsigned or oversize signature")
	// ErrWrongAlgorithm means the algorithm named does not fit the key.
	ErrWrongAlgorithm = errors.New("signature algorithm does not fit the key")
)

// Names of fields, as errors name them.
const (
	fVersion      = "version"
	fType         = "type"
	fToken        = "token serial"
	fCert         = "cert serial"
	fKeyVersion   = "key version"
	fAlgorithm    = "algorithm"
	fNonce        = "nonce"
	fTimestamp    = "timestamp"
	fSequence     = "sequence"
	fCustomer     = "customer ID"
	fAccount      = "account"
	fBalance      = "wallet balance"
	fWalletSeq    = "wallet sequence"
	fWalletLoad   = "wallet load"
	fAmount       = "amount"
	fCurrency     = "currency"
	fLoadID       = "load ID"
	fExpires      = "expires"
	fPrevSequence = "prev sequence"
	fState        = "state"
	fStateSig     = "state signature"
	fKind         = "kind"
	fLoadSequence = "load sequence"
	fAttempt      = "attempt"
	fErrorCode    = "error code"
	fErrorText    = "error text"
	fSignedAt     = "signed at"
	fSigner       = "signer serial"
	fLastLoad     = "last load ID"
	fSize         = "size"
	fTrailing     = "trailing bytes"
)

func msgErr(msg, field, format string, args ...any) error {
	return &LoadMessageError{Message: msg, Field: field, Problem: fmt.Sprintf(format, args...)}
}

// check is a validation in progress: the first problem sticks.
type check struct {
	msg string
	err error
}

func (c *check) fail(field, format string, args ...any) {
	if c.err == nil {
		c.err = msgErr(c.msg, field, format, args...)
	}
}

func (c *check) ident(field, v, extra string) {
	if c.err != nil {
		return
	}
	if err := checkIdent(field, v, extra); err != nil {
		var ie *InstructionError
		if errors.As(err, &ie) {
			c.fail(field, "%s", ie.Problem)
			return
		}
		c.fail(field, "%v", err)
	}
}

func (c *check) hexSerial(field, v string) {
	if c.err != nil {
		return
	}
	if v == "" || len(v) > maxIdentLen {
		c.fail(field, "%d characters; must be 1 to %d", len(v), maxIdentLen)
		return
	}
	for i := 0; i < len(v); i++ {
		if ch := v[i]; !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f') {
			c.fail(field, "character %q at position %d (lower-case hex only)", ch, i+1)
			return
		}
	}
}

func (c *check) time(field string, t time.Time) {
	switch {
	case t.Nanosecond() != 0:
		c.fail(field, "must be whole seconds")
	case t.Before(minTimestamp) || t.After(maxTimestamp):
		c.fail(field, "%d is outside the years 2000 to 9999", t.Unix())
	}
}

func (c *check) amount(field string, v money.Fen, min money.Fen) {
	if v < min || v > money.Max {
		c.fail(field, "%d fen is outside %d to %d", int64(v), int64(min), int64(money.Max))
	}
}

func (c *check) algorithm(a Algorithm) {
	if a < AlgECDSAP256SHA256 || a > AlgRSAPSSSHA256 {
		c.fail(fAlgorithm, "%d is not a known algorithm", a)
	}
}

func (h LoadHeader) check(c *check, want LoadMessageType) {
	if h.Version != LoadProtocolVersion {
		c.fail(fVersion, "%d is not supported (this program knows version %d)", h.Version, LoadProtocolVersion)
	}
	if h.Type != want {
		c.fail(fType, "%s where a %s belongs", h.Type, want)
	}
	c.ident(fToken, h.TokenSerial, ".-")
	c.hexSerial(fCert, h.CertSerial)
	if h.KeyVersion != KeyVersion {
		c.fail(fKeyVersion, "%d is not supported (version %d messages use key version %d)", h.KeyVersion, LoadProtocolVersion, KeyVersion)
	}
	c.algorithm(h.Algorithm)
	if len(h.Nonce) < MinNonceSize || len(h.Nonce) > MaxNonceSize {
		c.fail(fNonce, "%d bytes; must be %d to %d random bytes", len(h.Nonce), MinNonceSize, MaxNonceSize)
	}
	c.time(fTimestamp, h.Timestamp)
}

// loadIDOf checks that id is the load ID of the token's sequence.
func (c *check) loadIDOf(field, id, token string, seq uint64) {
	if c.err == nil && id != LoadID(token, seq) {
		c.fail(field, "%q is not the ID of load %d of token %s", id, seq, token)
	}
}

// Validate checks every field of a wallet state.
func (s WalletState) Validate() error {
	c := &check{msg: "wallet state"}
	if s.Version != WalletStateVersion {
		c.fail(fVersion, "%d is not supported (this program knows version %d)", s.Version, WalletStateVersion)
	}
	c.ident(fToken, s.TokenSerial, ".-")
	c.ident(fCustomer, s.CustomerID, "._-")
	if s.Sequence == 0 {
		c.fail(fSequence, "0; a wallet state is the result of a load")
	}
	c.amount(fBalance, s.Balance, 0)
	c.loadIDOf(fLastLoad, s.LastLoadID, s.TokenSerial, s.Sequence)
	c.time(fSignedAt, s.SignedAt)
	c.hexSerial(fSigner, s.SignerSerial)
	c.algorithm(s.Algorithm)
	return c.err
}

// Validate checks every field of a load request.
func (r LoadRequest) Validate() error {
	c := &check{msg: "load request"}
	r.LoadHeader.check(c, TypeLoadRequest)
	if r.Sequence == 0 {
		c.fail(fSequence, "0; loads are numbered from 1")
	}
	c.ident(fCustomer, r.CustomerID, "._-")
	c.ident(fAccount, r.Account, "-.")
	c.amount(fBalance, r.WalletBalance, 0)
	if r.WalletSequence >= r.Sequence && c.err == nil {
		c.fail(fWalletSeq, "%d is not below the request's sequence %d", r.WalletSequence, r.Sequence)
	}
	if r.WalletSequence == 0 {
		if r.WalletLastLoad != "" {
			c.fail(fWalletLoad, "must be empty for a wallet that never took a load")
		}
	} else {
		c.loadIDOf(fWalletLoad, r.WalletLastLoad, r.TokenSerial, r.WalletSequence)
	}
	c.amount(fAmount, r.Amount, 1)
	if c.err == nil && r.WalletBalance+r.Amount > money.Max {
		c.fail(fAmount, "the wallet would hold more than %d fen", int64(money.Max))
	}
	if r.Currency != Currency {
		c.fail(fCurrency, "%q is not %s", r.Currency, Currency)
	}
	return c.err
}

// Validate checks every field of a load allow, the embedded wallet state
// included (but no signature).
func (a LoadAllow) Validate() error {
	_, err := a.validate()
	return err
}

func (a LoadAllow) validate() (WalletState, error) {
	c := &check{msg: "load allow"}
	a.LoadHeader.check(c, TypeLoadAllow)
	if a.Sequence == 0 {
		c.fail(fSequence, "0; loads are numbered from 1")
	}
	c.ident(fCustomer, a.CustomerID, "._-")
	c.loadIDOf(fLoadID, a.LoadID, a.TokenSerial, a.Sequence)
	c.amount(fAmount, a.Amount, 1)
	c.time(fExpires, a.Expires)
	if c.err == nil && !a.Expires.After(a.Timestamp) {
		c.fail(fExpires, "not after the host time")
	}
	if c.err == nil && a.PrevSequence >= a.Sequence {
		c.fail(fPrevSequence, "%d is not below the sequence %d", a.PrevSequence, a.Sequence)
	}
	if len(a.StateSignature) == 0 || len(a.StateSignature) > MaxSignatureSize {
		c.fail(fStateSig, "%d bytes; must be 1 to %d", len(a.StateSignature), MaxSignatureSize)
	}
	if c.err != nil {
		return WalletState{}, c.err
	}
	st, err := DecodeWalletState(a.State)
	if err != nil {
		return WalletState{}, msgErr(c.msg, fState, "%v", err)
	}
	switch {
	case st.TokenSerial != a.TokenSerial || st.CustomerID != a.CustomerID:
		c.fail(fState, "for token %s of customer %s, not token %s of customer %s", st.TokenSerial, st.CustomerID, a.TokenSerial, a.CustomerID)
	case st.Sequence != a.Sequence || st.LastLoadID != a.LoadID:
		c.fail(fState, "the result of load %d (%s), not of %d", st.Sequence, st.LastLoadID, a.Sequence)
	case st.SignerSerial != a.CertSerial || st.Algorithm != a.Algorithm:
		c.fail(fState, "signed by %s with %s, the allow by %s with %s", st.SignerSerial, st.Algorithm, a.CertSerial, a.Algorithm)
	case st.Balance < a.Amount:
		c.fail(fState, "balance %d fen is below the amount loaded", int64(st.Balance))
	}
	return st, c.err
}

// Validate checks every field of a load report, the embedded wallet state
// included.
func (r LoadReport) Validate() error {
	c := &check{msg: "load report"}
	r.LoadHeader.check(c, TypeLoadReport)
	switch r.Kind {
	case ReportReceipt, ReportError:
		if r.LoadSequence == 0 {
			c.fail(fLoadSequence, "0; a %s names its load", r.Kind)
		}
		c.loadIDOf(fLoadID, r.LoadID, r.TokenSerial, r.LoadSequence)
		if r.Kind == ReportReceipt && c.err == nil && r.Sequence != r.LoadSequence {
			c.fail(fSequence, "a receipt of load %d from a wallet at %d", r.LoadSequence, r.Sequence)
		}
		if r.Kind == ReportError && c.err == nil && r.Sequence >= r.LoadSequence {
			c.fail(fSequence, "an error report on load %d from a wallet already at %d", r.LoadSequence, r.Sequence)
		}
	case ReportState:
		if r.LoadSequence != 0 || r.LoadID != "" {
			c.fail(fLoadSequence, "a state report names no load")
		}
	default:
		c.fail(fKind, "%d is not a kind of report", r.Kind)
	}
	c.amount(fBalance, r.WalletBalance, 0)
	if c.err == nil && r.Attempt < r.Sequence {
		c.fail(fAttempt, "%d is below the wallet's sequence %d", r.Attempt, r.Sequence)
	}
	if r.Kind == ReportError {
		if r.ErrorCode == 0 || r.ErrorCode > maxErrorCode {
			c.fail(fErrorCode, "%d is not a known error code", r.ErrorCode)
		}
	} else if r.ErrorCode != 0 || r.ErrorText != "" {
		c.fail(fErrorCode, "only an error report carries an error")
	}
	if len(r.ErrorText) > MaxErrorTextLen || !printableASCII(r.ErrorText) {
		c.fail(fErrorText, "must be at most %d characters of printable ASCII", MaxErrorTextLen)
	}
	if c.err != nil {
		return c.err
	}
	if r.Sequence == 0 {
		if len(r.State) != 0 {
			c.fail(fState, "a wallet at sequence 0 holds no state")
		}
		if r.WalletBalance != 0 {
			c.fail(fBalance, "a wallet that never took a load holds nothing")
		}
		return c.err
	}
	st, err := DecodeWalletState(r.State)
	if err != nil {
		return msgErr(c.msg, fState, "%v", err)
	}
	switch {
	case st.TokenSerial != r.TokenSerial || st.Sequence != r.Sequence:
		c.fail(fState, "the state of token %s at %d, not of token %s at %d", st.TokenSerial, st.Sequence, r.TokenSerial, r.Sequence)
	case r.WalletBalance > st.Balance:
		c.fail(fBalance, "%d fen is more than the state's %d", int64(r.WalletBalance), int64(st.Balance))
	}
	return c.err
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ---- encoding ----

type writer struct{ b []byte }

func (w *writer) byte(v byte)        { w.b = append(w.b, v) }
func (w *writer) u64(v uint64)       { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *writer) str(s string)       { w.b = appendString(w.b, s) }
func (w *writer) short(b []byte)     { w.byte(byte(len(b))); w.b = append(w.b, b...) }
func (w *writer) time(t time.Time)   { w.u64(uint64(t.Unix())) }
func (w *writer) amount(a money.Fen) { w.u64(uint64(a)) }
func (w *writer) blob(b []byte) {
	w.b = binary.BigEndian.AppendUint16(w.b, uint16(len(b)))
	w.b = append(w.b, b...)
}

func (w *writer) header(h LoadHeader) {
	w.byte(byte(h.Version))
	w.byte(byte(h.Type))
	w.str(h.TokenSerial)
	w.str(h.CertSerial)
	w.byte(h.KeyVersion)
	w.byte(byte(h.Algorithm))
	w.short(h.Nonce)
	w.time(h.Timestamp)
	w.u64(h.Sequence)
}

// EncodeWalletState validates s and returns its canonical encoding.
func EncodeWalletState(s WalletState) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	w := &writer{b: make([]byte, 0, 160)}
	w.byte(byte(s.Version))
	w.str(s.TokenSerial)
	w.str(s.CustomerID)
	w.u64(s.Sequence)
	w.amount(s.Balance)
	w.str(s.LastLoadID)
	w.time(s.SignedAt)
	w.str(s.SignerSerial)
	w.byte(byte(s.Algorithm))
	return w.b, nil
}

// EncodeLoadRequest validates r and returns its canonical encoding.
func EncodeLoadRequest(r LoadRequest) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	w := &writer{b: make([]byte, 0, 256)}
	w.header(r.LoadHeader)
	w.str(r.CustomerID)
	w.str(r.Account)
	w.amount(r.WalletBalance)
	w.u64(r.WalletSequence)
	w.str(r.WalletLastLoad)
	w.amount(r.Amount)
	w.str(r.Currency)
	return w.b, nil
}

// EncodeLoadAllow validates a and returns its canonical encoding.
func EncodeLoadAllow(a LoadAllow) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	w := &writer{b: make([]byte, 0, 512)}
	w.header(a.LoadHeader)
	w.str(a.CustomerID)
	w.str(a.LoadID)
	w.amount(a.Amount)
	w.time(a.Expires)
	w.u64(a.PrevSequence)
	w.blob(a.State)
	w.blob(a.StateSignature)
	return w.b, nil
}

// EncodeLoadReport validates r and returns its canonical encoding.
func EncodeLoadReport(r LoadReport) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	w := &writer{b: make([]byte, 0, 384)}
	w.header(r.LoadHeader)
	w.byte(byte(r.Kind))
	w.u64(r.LoadSequence)
	w.str(r.LoadID)
	w.amount(r.WalletBalance)
	w.u64(r.Attempt)
	w.blob(r.State)
	w.byte(byte(r.ErrorCode))
	w.str(r.ErrorText)
	return w.b, nil
}

// ---- decoding ----

// lreader consumes an encoding; the first failure sticks and names the
// field being read.
type lreader struct {
	msg string
	b   []byte
	err error
}

func (r *lreader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = msgErr(r.msg, field, "truncated: %d bytes needed, %d left", n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *lreader) byte(field string) byte {
	if b := r.take(field, 1); b != nil {
		return b[0]
	}
	return 0
}

func (r *lreader) u64(field string) uint64 {
	if b := r.take(field, 8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *lreader) short(field string) []byte {
	n := int(r.byte(field))
	return slices.Clone(r.take(field, n))
}

func (r *lreader) str(field string) string { return string(r.short(field)) }

func (r *lreader) blob(field string) []byte {
	b := r.take(field, 2)
	if b == nil {
		return nil
	}
	out := slices.Clone(r.take(field, int(binary.BigEndian.Uint16(b))))
	if len(out) == 0 {
		return nil
	}
	return out
}

// time reads a time, range-checked before conversion so that a huge value
// cannot wrap around into a plausible date.
func (r *lreader) time(field string) time.Time {
	v := r.u64(field)
	if r.err == nil && (v < uint64(minTimestamp.Unix()) || v > uint64(maxTimestamp.Unix())) {
		r.err = msgErr(r.msg, field, "%d is outside the years 2000 to 9999", v)
	}
	return time.Unix(int64(v), 0).UTC()
}

// amount reads fen, refusing what would be negative as int64.
func (r *lreader) amount(field string) money.Fen {
	v := r.u64(field)
	if r.err == nil && v > uint64(money.Max) {
		r.err = msgErr(r.msg, field, "%d fen is above %d", v, int64(money.Max))
	}
	return money.Fen(v)
}

func (r *lreader) header(want LoadMessageType) LoadHeader {
	var h LoadHeader
	h.Version = int(r.byte(fVersion))
	if r.err == nil && h.Version != LoadProtocolVersion {
		r.err = msgErr(r.msg, fVersion, "%d is not supported (this program knows version %d)", h.Version, LoadProtocolVersion)
	}
	h.Type = LoadMessageType(r.byte(fType))
	if r.err == nil && h.Type != want {
		r.err = msgErr(r.msg, fType, "%s where a %s belongs", h.Type, want)
	}
	h.TokenSerial = r.str(fToken)
	h.CertSerial = r.str(fCert)
	h.KeyVersion = r.byte(fKeyVersion)
	h.Algorithm = Algorithm(r.byte(fAlgorithm))
	h.Nonce = r.short(fNonce)
	h.Timestamp = r.time(fTimestamp)
	h.Sequence = r.u64(fSequence)
	return h
}

// start checks the size of an encoding before reading it.
func start(msg string, b []byte, max int) (*lreader, error) {
	if len(b) > max {
		return nil, msgErr(msg, fSize, "%d bytes; at most %d", len(b), max)
	}
	if len(b) == 0 {
		return nil, msgErr(msg, fVersion, "missing (empty %s)", msg)
	}
	return &lreader{msg: msg, b: b}, nil
}

// end checks that the whole encoding was read.
func (r *lreader) end() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return msgErr(r.msg, fTrailing, "%d bytes after the last field", len(r.b))
	}
	return nil
}

// DecodeWalletState parses and checks a wallet state encoding.
func DecodeWalletState(b []byte) (WalletState, error) {
	r, err := start("wallet state", b, MaxWalletStateSize)
	if err != nil {
		return WalletState{}, err
	}
	var s WalletState
	s.Version = int(r.byte(fVersion))
	if r.err == nil && s.Version != WalletStateVersion {
		return WalletState{}, msgErr(r.msg, fVersion, "%d is not supported (this program knows version %d)", s.Version, WalletStateVersion)
	}
	s.TokenSerial = r.str(fToken)
	s.CustomerID = r.str(fCustomer)
	s.Sequence = r.u64(fSequence)
	s.Balance = r.amount(fBalance)
	s.LastLoadID = r.str(fLastLoad)
	s.SignedAt = r.time(fSignedAt)
	s.SignerSerial = r.str(fSigner)
	s.Algorithm = Algorithm(r.byte(fAlgorithm))
	if err := r.end(); err != nil {
		return WalletState{}, err
	}
	if err := s.Validate(); err != nil {
		return WalletState{}, err
	}
	return s, nil
}

// DecodeLoadRequest parses and checks a load request encoding.
func DecodeLoadRequest(b []byte) (LoadRequest, error) {
	r, err := start(TypeLoadRequest.String(), b, MaxLoadRequestSize)
	if err != nil {
		return LoadRequest{}, err
	}
	var q LoadRequest
	q.LoadHeader = r.header(TypeLoadRequest)
	q.CustomerID = r.str(fCustomer)
	q.Account = r.str(fAccount)
	q.WalletBalance = r.amount(fBalance)
	q.WalletSequence = r.u64(fWalletSeq)
	q.WalletLastLoad = r.str(fWalletLoad)
	q.Amount = r.amount(fAmount)
	q.Currency = r.str(fCurrency)
	if err := r.end(); err != nil {
		return LoadRequest{}, err
	}
	if err := q.Validate(); err != nil {
		return LoadRequest{}, err
	}
	return q, nil
}

// DecodeLoadAllow parses and checks a load allow encoding (not its
// signatures).
func DecodeLoadAllow(b []byte) (LoadAllow, error) {
	r, err := start(TypeLoadAllow.String(), b, MaxLoadAllowSize)
	if err != nil {
		return LoadAllow{}, err
	}
	var a LoadAllow
	a.LoadHeader = r.header(TypeLoadAllow)
	a.CustomerID = r.str(fCustomer)
	a.LoadID = r.str(fLoadID)
	a.Amount = r.amount(fAmount)
	a.Expires = r.time(fExpires)
	a.PrevSequence = r.u64(fPrevSequence)
	a.State = r.blob(fState)
	a.StateSignature = r.blob(fStateSig)
	if err := r.end(); err != nil {
		return LoadAllow{}, err
	}
	if err := a.Validate(); err != nil {
		return LoadAllow{}, err
	}
	return a, nil
}

// DecodeLoadReport parses and checks a load report encoding.
func DecodeLoadReport(b []byte) (LoadReport, error) {
	r, err := start(TypeLoadReport.String(), b, MaxLoadReportSize)
	if err != nil {
		return LoadReport{}, err
	}
	var p LoadReport
	p.LoadHeader = r.header(TypeLoadReport)
	p.Kind = ReportKind(r.byte(fKind))
	p.LoadSequence = r.u64(fLoadSequence)
	p.LoadID = r.str(fLoadID)
	p.WalletBalance = r.amount(fBalance)
	p.Attempt = r.u64(fAttempt)
	p.State = r.blob(fState)
	p.ErrorCode = ErrorCode(r.byte(fErrorCode))
	p.ErrorText = r.str(fErrorText)
	if err := r.end(); err != nil {
		return LoadReport{}, err
	}
	if err := p.Validate(); err != nil {
		return LoadReport{}, err
	}
	return p, nil
}

// ---- digests and verification ----

func domainDigest(domain string, encoded []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(domain), encoded} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// LoadRequestDigest is the SHA-256 digest the USB key signs over an encoded
// load request.
func LoadRequestDigest(encoded []byte) []byte { return domainDigest(loadRequestDomain, encoded) }

// LoadAllowDigest is the digest GridPay's load signer signs over an
// encoded allow.
func LoadAllowDigest(encoded []byte) []byte { return domainDigest(loadAllowDomain, encoded) }

// LoadReportDigest is the digest the USB key signs over an encoded report.
func LoadReportDigest(encoded []byte) []byte { return domainDigest(loadReportDomain, encoded) }

// WalletStateDigest is the digest GridPay's load signer signs over an
// encoded wallet state.
func WalletStateDigest(encoded []byte) []byte { return domainDigest(walletStateDomain, encoded) }

// checkSigned refuses a missing or impossible signature before any
// decoding work.
func checkSigned(what string, sig []byte) error {
	if len(sig) == 0 || len(sig) > MaxSignatureSize {
		return fmt.Errorf("%s: %w: %d bytes (1 to %d)", what, ErrUnsigned, len(sig), MaxSignatureSize)
	}
	return nil
}

// verifyHeader checks that cert is the certificate the header names and
// that sig over digest verifies with it by the header's algorithm.
func verifyHeader(what string, cert *x509.Certificate, h LoadHeader, digest, sig []byte) error {
	if serial := hex.EncodeToString(cert.SerialNumber.Bytes()); h.CertSerial != serial {
		return fmt.Errorf("%w: the %s names %s, the signature is checked with %s", ErrWrongCertificate, what, h.CertSerial, serial)
	}
	if err := verifyAlg(cert.PublicKey, h.Algorithm, digest, sig); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// VerifyLoadRequest decodes an encoded load request and checks the USB
// key's signature with cert, which the request must name. Whether the
// certificate is trusted, bound and current, whether the nonce and the
// sequence are new: the caller checks those.
func VerifyLoadRequest(cert *x509.Certificate, encoded, sig []byte) (LoadRequest, error) {
	if err := checkSigned("load request", sig); err != nil {
		return LoadRequest{}, err
	}
	r, err := DecodeLoadRequest(encoded)
	if err != nil {
		return LoadRequest{}, err
	}
	if err := verifyHeader("load request", cert, r.LoadHeader, LoadRequestDigest(encoded), sig); err != nil {
		return LoadRequest{}, err
	}
	return r, nil
}

// VerifyLoadReport decodes an encoded load report and checks the USB key's
// signature with cert, which the report must name.
func VerifyLoadReport(cert *x509.Certificate, encoded, sig []byte) (LoadReport, error) {
	if err := checkSigned("load report", sig); err != nil {
		return LoadReport{}, err
	}
	r, err := DecodeLoadReport(encoded)
	if err != nil {
		return LoadReport{}, err
	}
	if err := verifyHeader("load report", cert, r.LoadHeader, LoadReportDigest(encoded), sig); err != nil {
		return LoadReport{}, err
	}
	return r, nil
}

// VerifyWalletState decodes an encoded wallet state and checks GridPay's
// signature over it with signer, the certificate it names. Whether signer
// is GridPay's load signer is the caller's to check (its chain and
// identity).
func VerifyWalletState(signer *x509.Certificate, encoded, sig []byte) (WalletState, error) {
	if err := checkSigned("wallet state", sig); err != nil {
		return WalletState{}, err
	}
	s, err := DecodeWalletState(encoded)
	if err != nil {
		return WalletState{}, err
	}
	if serial := hex.EncodeToString(signer.SerialNumber.Bytes()); s.SignerSerial != serial {
		return WalletState{}, fmt.Errorf("%w: the wallet state names %s, the signature is checked with %s", ErrWrongCertificate, s.SignerSerial, serial)
	}
	if err := verifyAlg(signer.PublicKey, s.Algorithm, WalletStateDigest(encoded), sig); err != nil {
		return WalletState{}, fmt.Errorf("wallet state: %w", err)
	}
	return s, nil
}

// VerifyLoadAllow decodes an encoded allow and checks both of GridPay's
// signatures with signer, the certificate the allow names: over the allow,
// and over the new wallet state it carries. It returns the allow and the
// decoded state. Whether signer is GridPay's load signer, whether the allow
// has expired and whether it fits the request are the caller's to check.
func VerifyLoadAllow(signer *x509.Certificate, encoded, sig []byte) (LoadAllow, WalletState, error) {
	if err := checkSigned("load allow", sig); err != nil {
		return LoadAllow{}, WalletState{}, err
	}
	a, err := DecodeLoadAllow(encoded)
	if err != nil {
		return LoadAllow{}, WalletState{}, err
	}
	if err := verifyHeader("load allow", signer, a.LoadHeader, LoadAllowDigest(encoded), sig); err != nil {
		return LoadAllow{}, WalletState{}, err
	}
	st, err := VerifyWalletState(signer, a.State, a.StateSignature)
	if err != nil {
		return LoadAllow{}, WalletState{}, err
	}
	return a, st, nil
}

// TrimError shortens a client's error text to what a report may carry:
// printable ASCII, at most MaxErrorTextLen characters.
func TrimError(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < MaxErrorTextLen; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		b.WriteByte(c)
	}
	return b.String()
}
