package protocol

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gridpay/gridpay/money"
)

// The payment instruction is what a customer's USB key signs to order a
// payment: which bills (or a prepaid top-up), how much, under which
// idempotency key, from which key and certificate, when, and with a fresh
// nonce so that a captured instruction cannot be played again.
//
// # Encoding, version 1
//
// The instruction travels as bytes (EncodePaymentInstruction), and the
// signature covers exactly those bytes, so signer and verifier never
// re-serialise anything. The fields follow one another in this fixed order;
// a "string" is one length byte followed by that many bytes of ASCII:
//
//	version          1 byte: 1
//	idempotency key  string: 16–64 of A–Z a–z 0–9 '-' (client-generated, kept across retries)
//	customer ID      string: 1–64 letters, digits, '.', '_', '-', starting with a letter or digit
//	token serial     string: 1–64 letters, digits, '.', '-', starting with a letter or digit
//	cert serial      string: 1–64 lower-case hex digits (the signing certificate's serial)
//	kind             string: "bills" or "prepay"
//	bill count       1 byte: 1–50 for bills, 0 for prepay
//	bill IDs         bill count strings: as customer IDs, strictly ascending (sorted, no repeats)
//	amount           8 bytes: fen, big-endian two's complement; 1 to money.Max
//	currency         string: "CNY"
//	nonce            1 byte length (16–32) and that many random bytes
//	timestamp        8 bytes: Unix seconds (UTC), big-endian; years 2000 to 9999
//	sequence         8 bytes: the token's transaction sequence number, big-endian; 0 if none
//
// Nothing may follow the last field, and an encoding is never longer than
// MaxPaymentInstructionSize. A later version changes the first byte and,
// if it changes the meaning of the signature, the domain string.
//
// # Signature
//
// The USB key signs PaymentInstructionDigest(encoding): SHA-256 over the
// domain "GridPay payment instruction v1" and the encoding, each preceded
// by its length as 4 bytes big-endian — the same construction as
// BindingProofDigest, with its own domain, so a payment signature can
// never pass for a binding proof or the other way round. ECDSA signatures
// are ASN.1 DER; RSA ones PKCS #1 v1.5 or PSS (VerifyDigest).

// PaymentInstructionVersion is the version this package writes.
const PaymentInstructionVersion = 1

// paymentInstructionDomain separates payment signatures from every other
// signature the key makes.
const paymentInstructionDomain = "GridPay payment instruction v1"

// Limits of the fields of a payment instruction.
const (
	MinIdempotencyKeyLen = 16
	MaxIdempotencyKeyLen = 64
	MaxPaymentBills      = 50
	MinNonceSize         = 16
	MaxNonceSize         = 32
	maxIdentLen          = 64
	// MaxPaymentInstructionSize caps an encoded instruction: every field at
	// its longest fits (about 3.6 KB).
	MaxPaymentInstructionSize = 4096
)

// Currency is the only currency GridPay handles.
const Currency = "CNY"

// PaymentKind says what a payment pays.
type PaymentKind string

const (
	// PayBills pays one or more bills, each in full of its amount due.
	PayBills PaymentKind = "bills"
	// PayPrepay tops up the customer's prepaid account at the platform.
	PayPrepay PaymentKind = "prepay"
)

// PaymentInstruction is a customer's order to pay, as signed by the USB key.
type PaymentInstruction struct {
	Version        int
	IdempotencyKey string
	CustomerID     string
	TokenSerial    string
	CertSerial     string
	Kind           PaymentKind
	// BillIDs are the bills paid, sorted (SortBillIDs); empty for prepay.
	BillIDs  []string
	Amount   money.Fen
	Currency string
	Nonce    []byte
	// Timestamp is when the key signed, in whole seconds, UTC.
	Timestamp time.Time
	// Sequence is the token's online transaction sequence number, 0 while
	// tokens keep none.
	Sequence uint64
}

// ErrBadInstruction is matched (errors.Is) by every *InstructionError.
var ErrBadInstruction = errors.New("bad payment instruction")

// InstructionError says which field of a payment instruction is wrong.
type InstructionError struct {
	Field   string // e.g. "idempotency key", "bill IDs", "trailing bytes"
	Problem string
}

func (e *InstructionError) Error() string {
	return "payment instruction: " + e.Field + ": " + e.Problem
}

// Is makes errors.Is(err, ErrBadInstruction) true.
func (e *InstructionError) Is(target error) bool { return target == ErrBadInstruction }

func badField(field, format string, args ...any) error {
	return &InstructionError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Names of the fields, as errors name them.
const (
	fieldVersion   = "version"
	fieldKey       = "idempotency key"
	fieldCustomer  = "customer ID"
	fieldToken     = "token serial"
	fieldCert      = "cert serial"
	fieldKind      = "kind"
	fieldBills     = "bill IDs"
	fieldAmount    = "amount"
	fieldCurrency  = "currency"
	fieldNonce     = "nonce"
	fieldTimestamp = "timestamp"
	fieldSequence  = "sequence"
)

var (
	minTimestamp = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTimestamp = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// Validate checks every field against the rules of the encoding.
func (p PaymentInstruction) Validate() error {
	if p.Version != PaymentInstructionVersion {
		return badField(fieldVersion, "%d is not supported (this program knows version %d)", p.Version, PaymentInstructionVersion)
	}
	if err := CheckIdempotencyKey(p.IdempotencyKey); err != nil {
		return err
	}
	if err := checkIdent(fieldCustomer, p.CustomerID, "._-"); err != nil {
		return err
	}
	if err := checkIdent(fieldToken, p.TokenSerial, ".-"); err != nil {
		return err
	}
	if err := checkHexSerial(p.CertSerial); err != nil {
		return err
	}
	switch p.Kind {
	case PayBills:
		if len(p.BillIDs) == 0 || len(p.BillIDs) > MaxPaymentBills {
			return badField(fieldBills, "%d bills; a payment pays 1 to %d", len(p.BillIDs), MaxPaymentBills)
		}
	case PayPrepay:
		if len(p.BillIDs) != 0 {
			return badField(fieldBills, "a prepaid top-up names no bills")
		}
	default:
		return badField(fieldKind, "%q is neither %q nor %q", p.Kind, PayBills, PayPrepay)
	}
	for i, id := range p.BillIDs {
		if err := checkIdent(fieldBills, id, "._-"); err != nil {
			return err
		}
		if i > 0 && p.BillIDs[i-1] >= id {
			return badField(fieldBills, "not sorted or repeated at %q (sort with SortBillIDs)", id)
		}
	}
	if p.Amount <= 0 || p.Amount > money.Max {
		return badField(fieldAmount, "%d fen is outside 1 to %d", int64(p.Amount), int64(money.Max))
	}
	if p.Currency != Currency {
		return badField(fieldCurrency, "%q is not %s", p.Currency, Currency)
	}
	if len(p.Nonce) < MinNonceSize || len(p.Nonce) > MaxNonceSize {
		return badField(fieldNonce, "%d bytes; must be %d to %d random bytes", len(p.Nonce), MinNonceSize, MaxNonceSize)
	}
	if p.Timestamp.Nanosecond() != 0 {
		return badField(fieldTimestamp, "must be whole seconds")
	}
	if p.Timestamp.Before(minTimestamp) || p.Timestamp.After(maxTimestamp) {
		return badField(fieldTimestamp, "%d is outside the years 2000 to 9999", p.Timestamp.Unix())
	}
	return nil
}

// CheckIdempotencyKey checks the syntax of a client's idempotency key.
func CheckIdempotencyKey(key string) error {
	if len(key) < MinIdempotencyKeyLen || len(key) > MaxIdempotencyKeyLen {
		return badField(fieldKey, "%d characters; must be %d to %d", len(key), MinIdempotencyKeyLen, MaxIdempotencyKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; !isAlnum(c) && c != '-' {
			return badField(fieldKey, "character %q at position %d (allowed: letters, digits and '-')", c, i+1)
		}
	}
	return nil
}

// SortBillIDs returns the bill IDs sorted and without repeats, as an
// instruction carries them.
func SortBillIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// checkIdent follows the identifier rule of the certificates (pki): letters,
// digits and a few separators, starting with a letter or digit, so that IDs
// compare byte for byte with those in the certificate.
func checkIdent(field, v, extra string) error {
	if v == "" || len(v) > maxIdentLen {
		return badField(field, "%d characters; must be 1 to %d", len(v), maxIdentLen)
	}
	if !isAlnum(v[0]) {
		return badField(field, "must start with a letter or digit")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isAlnum(c) && strings.IndexByte(extra, c) < 0 {
			return badField(field, "character %q at position %d (allowed: letters, digits and %q)", c, i+1, extra)
		}
	}
	return nil
}

func checkHexSerial(v string) error {
	if v == "" || len(v) > maxIdentLen {
		return badField(fieldCert, "%d characters; must be 1 to %d", len(v), maxIdentLen)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return badField(fieldCert, "character %q at position %d (lower-case hex only)", c, i+1)
		}
	}
	return nil
}

// EncodePaymentInstruction validates p and returns its canonical encoding,
// the bytes the USB key signs the digest of.
func EncodePaymentInstruction(p PaymentInstruction) ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 256)
	b = append(b, byte(p.Version))
	for _, s := range []string{p.IdempotencyKey, p.CustomerID, p.TokenSerial, p.CertSerial, string(p.Kind)} {
		b = appendString(b, s)
	}
	b = append(b, byte(len(p.BillIDs)))
	for _, id := range p.BillIDs {
		b = appendString(b, id)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(p.Amount))
	b = appendString(b, p.Currency)
	b = append(b, byte(len(p.Nonce)))
	b = append(b, p.Nonce...)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Timestamp.Unix()))
	b = binary.BigEndian.AppendUint64(b, p.Sequence)
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// DecodePaymentInstruction parses an encoding and checks every field. It
// refuses an unknown version, a truncated or oversize encoding, bytes after
// the last field and any field that breaks its rule, with an
// *InstructionError naming the field.
func DecodePaymentInstruction(b []byte) (PaymentInstruction, error) {
	if len(b) > MaxPaymentInstructionSize {
		return PaymentInstruction{}, badField("size", "%d bytes; at most %d", len(b), MaxPaymentInstructionSize)
	}
	if len(b) == 0 {
		return PaymentInstruction{}, badField(fieldVersion, "missing (empty instruction)")
	}
	if b[0] != PaymentInstructionVersion {
		return PaymentInstruction{}, badField(fieldVersion, "%d is not supported (this program knows version %d)", b[0], PaymentInstructionVersion)
	}
	r := reader{b: b[1:]}
	p := PaymentInstruction{Version: int(b[0])}
	p.IdempotencyKey = r.string(fieldKey)
	p.CustomerID = r.string(fieldCustomer)
	p.TokenSerial = r.string(fieldToken)
	p.CertSerial = r.string(fieldCert)
	p.Kind = PaymentKind(r.string(fieldKind))
	if n := int(r.byte(fieldBills)); r.err == nil && n > 0 {
		if n > MaxPaymentBills {
			return PaymentInstruction{}, badField(fieldBills, "%d bills; a payment pays 1 to %d", n, MaxPaymentBills)
		}
		p.BillIDs = make([]string, 0, n)
		for range n {
			p.BillIDs = append(p.BillIDs, r.string(fieldBills))
		}
	}
	p.Amount = money.Fen(r.uint64(fieldAmount))
	p.Currency = r.string(fieldCurrency)
	p.Nonce = r.bytes(fieldNonce)
	ts := r.uint64(fieldTimestamp)
	p.Sequence = r.uint64(fieldSequence)
	if r.err != nil {
		return PaymentInstruction{}, r.err
	}
	if len(r.b) != 0 {
		return PaymentInstruction{}, badField("trailing bytes", "%d bytes after the last field", len(r.b))
	}
	// Range-check before converting, so that a huge value cannot wrap
	// around into a plausible date.
	if ts > uint64(maxTimestamp.Unix()) {
		return PaymentInstruction{}, badField(fieldTimestamp, "%d is outside the years 2000 to 9999", ts)
	}
	p.Timestamp = time.Unix(int64(ts), 0).UTC()
	if err := p.Validate(); err != nil {
		return PaymentInstruction{}, err
	}
	return p, nil
}

// reader consumes an encoding; the first failure sticks and names the
// field being read.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = badField(field, "truncated: %d bytes needed, %d left", n, len(r.b))
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte(field string) byte {
	if b := r.take(field, 1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) bytes(field string) []byte {
	n := int(r.byte(field))
	return slices.Clone(r.take(field, n))
}

func (r *reader) string(field string) string { return string(r.bytes(field)) }

func (r *reader) uint64(field string) uint64 {
	if b := r.take(field, 8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// PaymentInstructionDigest is the SHA-256 digest the USB key signs over an
// encoded instruction.
func PaymentInstructionDigest(encoded []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(paymentInstructionDomain), encoded} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// ErrWrongCertificate means an instruction names another certificate than
// the one it is verified with.
var ErrWrongCertificate = errors.New("payment instruction names another certificate")

// VerifyPaymentInstruction decodes an encoded instruction and checks the
// signature over its digest with cert's public key, and that the
// instruction names cert. It says nothing about whether the certificate is
// trusted, bound or fresh, nor whether the nonce was seen before: the
// caller checks those.
func VerifyPaymentInstruction(cert *x509.Certificate, encoded, sig []byte) (PaymentInstruction, error) {
	p, err := DecodePaymentInstruction(encoded)
	if err != nil {
		return PaymentInstruction{}, err
	}
	if serial := hex.EncodeToString(cert.SerialNumber.Bytes()); p.CertSerial != serial {
		return PaymentInstruction{}, fmt.Errorf("%w: it names %s, the signature is checked with %s", ErrWrongCertificate, p.CertSerial, serial)
	}
	if err := VerifyDigest(cert, PaymentInstructionDigest(encoded), sig); err != nil {
		return PaymentInstruction{}, fmt.Errorf("payment instruction: %w", err)
	}
	return p, nil
}

// NewNonce returns n random bytes (MinNonceSize to MaxNonceSize).
func NewNonce(n int) []byte {
	if n < MinNonceSize || n > MaxNonceSize {
		panic(fmt.Sprintf("protocol.NewNonce(%d): size outside %d to %d", n, MinNonceSize, MaxNonceSize))
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return b
}
