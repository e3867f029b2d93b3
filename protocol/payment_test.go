package protocol

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/gridpay/gridpay/money"
)

func sampleInstruction() PaymentInstruction {
	return PaymentInstruction{
		Version:        PaymentInstructionVersion,
		IdempotencyKey: "7f3c2a9e-1b4d-4c8a-9e2f-0a1b2c3d4e5f",
		CustomerID:     "C31000002",
		TokenSerial:    "1079af88dcf63fa1",
		CertSerial:     "8f12ab",
		Kind:           PayBills,
		BillIDs:        []string{"B20260100000002", "B20260200000002"},
		Amount:         123456,
		Currency:       Currency,
		Nonce:          bytes.Repeat([]byte{0x5a}, 16),
		Timestamp:      time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC),
	}
}

// goldenInstruction pins encoding version 1 byte for byte: a change that
// breaks it breaks every client in the field.
const goldenInstruction = "01" +
	"24" + "37663363326139652d316234642d346338612d396532662d306131623263336434653566" + // key
	"09" + "433331303030303032" + // customer
	"10" + "31303739616638386463663633666131" + // token serial
	"06" + "386631326162" + // cert serial
	"05" + "62696c6c73" + // "bills"
	"02" + "0f" + "423230323630313030303030303032" + "0f" + "423230323630323030303030303032" +
	"000000000001e240" + // 123456 fen
	"03" + "434e59" +
	"10" + "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" +
	"0000000069a3f908" + // 2026-03-01T08:30:00Z
	"0000000000000000"

func TestPaymentInstructionGolden(t *testing.T) {
	enc, err := EncodePaymentInstruction(sampleInstruction())
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(enc); got != goldenInstruction {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, goldenInstruction)
	}
	// The digest is SHA-256 of the length-prefixed domain and encoding.
	var want bytes.Buffer
	for _, part := range [][]byte{[]byte("GridPay payment instruction v1"), enc} {
		binary.Write(&want, binary.BigEndian, uint32(len(part)))
		want.Write(part)
	}
	sum := sha256.Sum256(want.Bytes())
	if !bytes.Equal(PaymentInstructionDigest(enc), sum[:]) {
		t.Fatal("digest construction changed")
	}
	if bytes.Equal(PaymentInstructionDigest(enc), BindingProofDigest("", "", enc)) {
		t.Fatal("payment and binding digests coincide")
	}
}

func TestPaymentInstructionRoundTrip(t *testing.T) {
	prepay := sampleInstruction()
	prepay.Kind, prepay.BillIDs, prepay.Sequence = PayPrepay, nil, 1<<63+5
	fifty := sampleInstruction()
	fifty.BillIDs = nil
	for i := range MaxPaymentBills {
		fifty.BillIDs = append(fifty.BillIDs, strings.Repeat("b", 60)+string(rune('A'+i/26))+string(rune('a'+i%26)))
	}
	fifty.IdempotencyKey = strings.Repeat("k", MaxIdempotencyKeyLen)
	fifty.CustomerID = strings.Repeat("c", 64)
	fifty.TokenSerial = strings.Repeat("t", 64)
	fifty.CertSerial = strings.Repeat("f", 64)
	fifty.Nonce = bytes.Repeat([]byte{1}, MaxNonceSize)
	fifty.Amount = money.Max
	for name, p := range map[string]PaymentInstruction{"bills": sampleInstruction(), "prepay": prepay, "largest": fifty} {
		t.Run(name, func(t *testing.T) {
			enc, err := EncodePaymentInstruction(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(enc) > MaxPaymentInstructionSize {
				t.Fatalf("%d bytes exceed the cap", len(enc))
			}
			got, err := DecodePaymentInstruction(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !equalInstructions(got, p) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, p)
			}
		})
	}
}

func equalInstructions(a, b PaymentInstruction) bool {
	ea, err1 := EncodePaymentInstruction(a)
	eb, err2 := EncodePaymentInstruction(b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb) && a.Timestamp.Equal(b.Timestamp) && a.Timestamp.Location() == time.UTC &&
		a.IdempotencyKey == b.IdempotencyKey && a.Amount == b.Amount && a.Sequence == b.Sequence && len(a.BillIDs) == len(b.BillIDs)
}

func TestPaymentInstructionValidate(t *testing.T) {
	cases := []struct {
		field string
		edit  func(p *PaymentInstruction)
	}{
		{fieldVersion, func(p *PaymentInstruction) { p.Version = 2 }},
		{fieldKey, func(p *PaymentInstruction) { p.IdempotencyKey = "short" }},
		{fieldKey, func(p *PaymentInstruction) { p.IdempotencyKey = strings.Repeat("k", 65) }},
		{fieldKey, func(p *PaymentInstruction) { p.IdempotencyKey = "7f3c2a9e_1b4d_4c8a_9e2f" }},
		{fieldCustomer, func(p *PaymentInstruction) { p.CustomerID = "" }},
		{fieldCustomer, func(p *PaymentInstruction) { p.CustomerID = "C3/1" }},
		{fieldCustomer, func(p *PaymentInstruction) { p.CustomerID = "-C1" }},
		{fieldToken, func(p *PaymentInstruction) { p.TokenSerial = "10 79" }},
		{fieldToken, func(p *PaymentInstruction) { p.TokenSerial = "10_79" }},
		{fieldCert, func(p *PaymentInstruction) { p.CertSerial = "8F12AB" }},
		{fieldKind, func(p *PaymentInstruction) { p.Kind = "gift" }},
		{fieldBills, func(p *PaymentInstruction) { p.BillIDs = nil }},
		{fieldBills, func(p *PaymentInstruction) { p.BillIDs = []string{"B2", "B1"} }},
		{fieldBills, func(p *PaymentInstruction) { p.BillIDs = []string{"B1", "B1"} }},
		{fieldBills, func(p *PaymentInstruction) { p.BillIDs = []string{"B 1"} }},
		{fieldBills, func(p *PaymentInstruction) { p.BillIDs = make([]string, 51) }},
		{fieldBills, func(p *PaymentInstruction) { p.Kind = PayPrepay }},
		{fieldAmount, func(p *PaymentInstruction) { p.Amount = 0 }},
		{fieldAmount, func(p *PaymentInstruction) { p.Amount = -5 }},
		{fieldAmount, func(p *PaymentInstruction) { p.Amount = money.Max + 1 }},
		{fieldCurrency, func(p *PaymentInstruction) { p.Currency = "USD" }},
		{fieldNonce, func(p *PaymentInstruction) { p.Nonce = make([]byte, 15) }},
		{fieldNonce, func(p *PaymentInstruction) { p.Nonce = make([]byte, 33) }},
		{fieldTimestamp, func(p *PaymentInstruction) { p.Timestamp = p.Timestamp.Add(time.Millisecond) }},
		{fieldTimestamp, func(p *PaymentInstruction) { p.Timestamp = time.Unix(0, 0) }},
	}
	for _, c := range cases {
		p := sampleInstruction()
		c.edit(&p)
		_, err := EncodePaymentInstruction(p)
		var ie *InstructionError
		if !errors.As(err, &ie) || ie.Field != c.field || !errors.Is(err, ErrBadInstruction) {
			t.Errorf("%s: got %v, want an error naming %q", c.field, err, c.field)
		}
	}
	if err := CheckIdempotencyKey("ABCDEFGHIJ-0123456789"); err != nil {
		t.Errorf("a good key refused: %v", err)
	}
	if got := SortBillIDs([]string{"B3", "B1", "B3", "B2"}); strings.Join(got, ",") != "B1,B2,B3" {
		t.Errorf("SortBillIDs = %v", got)
	}
}

func TestDecodePaymentInstructionRefuses(t *testing.T) {
	good, _ := hex.DecodeString(goldenInstruction)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	// Offsets into the golden encoding.
	const nonceLenAt = len(goldenInstruction)/2 - 8 - 8 - 16 - 1
	cases := []struct {
		name, field string
		in          []byte
	}{
		{"empty", fieldVersion, nil},
		{"version 2", fieldVersion, mutate(func(b []byte) []byte { b[0] = 2; return b })},
		{"version 0", fieldVersion, mutate(func(b []byte) []byte { b[0] = 0; return b })},
		{"trailing byte", "trailing bytes", append(bytes.Clone(good), 0)},
		{"truncated in the sequence", fieldSequence, good[:len(good)-1]},
		{"truncated in the key", fieldKey, good[:5]},
		{"key length beyond the end", fieldKey, []byte{1, 200, 'a'}},
		{"oversize", "size", make([]byte, MaxPaymentInstructionSize+1)},
		{"nonce too short", fieldNonce, mutate(func(b []byte) []byte {
			b[nonceLenAt] = 15
			return append(b[:nonceLenAt+1+15], b[nonceLenAt+1+16:]...)
		})},
		{"bad key character", fieldKey, mutate(func(b []byte) []byte { b[3] = ' '; return b })},
		{"many bills", fieldBills, mutate(func(b []byte) []byte {
			i := 1 + 1 + 36 + 1 + 9 + 1 + 16 + 1 + 6 + 1 + 5
			b[i] = 51
			return b
		})},
		{"timestamp far in the future", fieldTimestamp, mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[len(b)-16:], 1<<63)
			return b
		})},
		{"negative amount", fieldAmount, mutate(func(b []byte) []byte {
			i := len(b) - 8 - 8 - 17 - 4 - 8
			binary.BigEndian.PutUint64(b[i:], uint64(1<<64-100))
			return b
		})},
	}
	for _, c := range cases {
		_, err := DecodePaymentInstruction(c.in)
		var ie *InstructionError
		if !errors.As(err, &ie) || ie.Field != c.field {
			t.Errorf("%s: got %v, want an error naming %q", c.name, err, c.field)
		}
	}
	if _, err := DecodePaymentInstruction(good); err != nil {
		t.Fatalf("the golden encoding does not decode: %v", err)
	}
}

// testCert makes a self-signed certificate for a key (serial 0x8f12ab, the
// sample's).
func testCert(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x8f12ab), Subject: pkix.Name{CommonName: "C31000002"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestVerifyPaymentInstruction(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	enc, err := EncodePaymentInstruction(sampleInstruction())
	if err != nil {
		t.Fatal(err)
	}
	digest := PaymentInstructionDigest(enc)
	for name, key := range map[string]crypto.Signer{"ecdsa": ecKey, "rsa": rsaKey} {
		t.Run(name, func(t *testing.T) {
			cert := testCert(t, key)
			sig, err := key.Sign(rand.Reader, digest, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			p, err := VerifyPaymentInstruction(cert, enc, sig)
			if err != nil || p.Amount != 123456 || p.CertSerial != "8f12ab" {
				t.Fatalf("good signature: %+v %v", p, err)
			}
			// One flipped bit in the signed bytes (still a valid
			// instruction: the amount changes) fails the signature.
			tampered := bytes.Clone(enc)
			tampered[len(tampered)-8-8-17-4-1] ^= 1
			if _, err := DecodePaymentInstruction(tampered); err != nil {
				t.Fatalf("tampered encoding should still decode: %v", err)
			}
			if _, err := VerifyPaymentInstruction(cert, tampered, sig); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("tampered amount: %v", err)
			}
			if _, err := VerifyPaymentInstruction(testCert(t, otherKey), enc, sig); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("another key's certificate: %v", err)
			}
		})
	}
	// An instruction naming another certificate is refused before the
	// signature is even looked at.
	cert := testCert(t, ecKey)
	other := sampleInstruction()
	other.CertSerial = "01"
	enc2, _ := EncodePaymentInstruction(other)
	sig, _ := ecKey.Sign(rand.Reader, PaymentInstructionDigest(enc2), crypto.SHA256)
	if _, err := VerifyPaymentInstruction(cert, enc2, sig); !errors.Is(err, ErrWrongCertificate) {
		t.Fatalf("instruction for another certificate: %v", err)
	}
	if _, err := VerifyPaymentInstruction(cert, []byte{1}, sig); !errors.Is(err, ErrBadInstruction) {
		t.Fatalf("garbage: %v", err)
	}
}

func TestNewNonce(t *testing.T) {
	a, b := NewNonce(16), NewNonce(16)
	if len(a) != 16 || bytes.Equal(a, b) {
		t.Fatalf("nonces %x %x", a, b)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("NewNonce(8) did not panic")
		}
	}()
	NewNonce(8)
}

// FuzzDecodePaymentInstruction: Decode never panics, never accepts an
// oversize input, and whatever it accepts is canonical — it encodes back to
// exactly the same bytes, so one instruction has one encoding and one
// digest. Corpus in testdata/fuzz/FuzzDecodePaymentInstruction.
func FuzzDecodePaymentInstruction(f *testing.F) {
	good, _ := hex.DecodeString(goldenInstruction)
	f.Add(good)
	prepay := sampleInstruction()
	prepay.Kind, prepay.BillIDs = PayPrepay, nil
	enc, _ := EncodePaymentInstruction(prepay)
	f.Add(enc)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePaymentInstruction(b)
		if err != nil {
			if !errors.Is(err, ErrBadInstruction) {
				t.Fatalf("error %v is not ErrBadInstruction", err)
			}
			return
		}
		if len(b) > MaxPaymentInstructionSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		again, err := EncodePaymentInstruction(p)
		if err != nil {
			t.Fatalf("decoded instruction does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("not canonical:\n in  %x\n out %x", b, again)
		}
	})
}
