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

var loadT0 = time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC)

const (
	sampleToken  = "1079af88dcf63fa1"
	sampleSigner = "5e1f"
)

func sampleHeader(typ LoadMessageType, cert string, seq uint64) LoadHeader {
	return LoadHeader{Version: LoadProtocolVersion, Type: typ, TokenSerial: sampleToken, CertSerial: cert, KeyVersion: KeyVersion,
		Algorithm: AlgECDSAP256SHA256, Nonce: bytes.Repeat([]byte{0x5a}, 16), Timestamp: loadT0, Sequence: seq}
}

func sampleState() WalletState {
	return WalletState{Version: WalletStateVersion, TokenSerial: sampleToken, CustomerID: "C31000002", Sequence: 7, Balance: 150000,
		LastLoadID: LoadID(sampleToken, 7), SignedAt: loadT0, SignerSerial: sampleSigner, Algorithm: AlgECDSAP256SHA256}
}

func sampleRequest() LoadRequest {
	return LoadRequest{LoadHeader: sampleHeader(TypeLoadRequest, "8f12ab", 7), CustomerID: "C31000002", Account: "9100000012345",
		WalletBalance: 100000, WalletSequence: 6, WalletLastLoad: LoadID(sampleToken, 6), Amount: 50000, Currency: Currency}
}

func sampleAllow(t testing.TB) LoadAllow {
	t.Helper()
	st, err := EncodeWalletState(sampleState())
	if err != nil {
		t.Fatal(err)
	}
	return LoadAllow{LoadHeader: sampleHeader(TypeLoadAllow, sampleSigner, 7), CustomerID: "C31000002", LoadID: LoadID(sampleToken, 7),
		Amount: 50000, Expires: loadT0.Add(2 * time.Minute), PrevSequence: 6, State: st, StateSignature: bytes.Repeat([]byte{1}, 70)}
}

func sampleReport(t testing.TB, kind ReportKind) LoadReport {
	t.Helper()
	st, err := EncodeWalletState(sampleState())
	if err != nil {
		t.Fatal(err)
	}
	r := LoadReport{LoadHeader: sampleHeader(TypeLoadReport, "8f12ab", 7), Kind: kind, WalletBalance: 150000, Attempt: 7, State: st}
	switch kind {
	case ReportReceipt:
		r.LoadSequence, r.LoadID = 7, LoadID(sampleToken, 7)
	case ReportError:
		r.LoadSequence, r.LoadID, r.Attempt = 8, LoadID(sampleToken, 8), 8
		r.ErrorCode, r.ErrorText = ErrAllowExpired, "the allow expired at 08:32"
	}
	return r
}

// The version-1 encodings, byte for byte: a change that breaks these
// breaks every USB key and wallet in the field.
const (
	goldenWalletState = "01" +
		"10" + "31303739616638386463663633666131" + // token serial
		"09" + "433331303030303032" + // customer
		"0000000000000007" + // sequence
		"00000000000249f0" + // 150000 fen
		"17" + "6c6f61642d313037396166383864636636336661312d37" + // load-1079af88dcf63fa1-7
		"0000000069a3f908" + // signed at 2026-03-01T08:30:00Z
		"04" + "35653166" + // signer serial 5e1f
		"01" // ECDSA P-256 SHA-256
	goldenLoadRequest = "01" + "01" + // version, type
		"10" + "31303739616638386463663633666131" +
		"06" + "386631326162" + // cert serial 8f12ab
		"01" + "01" + // key version, algorithm
		"10" + "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" +
		"0000000069a3f908" + // timestamp
		"0000000000000007" + // sequence
		"09" + "433331303030303032" +
		"0d" + "39313030303030303132333435" + // account
		"00000000000186a0" + // wallet balance 100000
		"0000000000000006" + // wallet sequence
		"17" + "6c6f61642d313037396166383864636636336661312d36" +
		"000000000000c350" + // amount 50000
		"03" + "434e59"
)

func TestLoadGolden(t *testing.T) {
	st, err := EncodeWalletState(sampleState())
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(st); got != goldenWalletState {
		t.Fatalf("wallet state encoding changed:\n got %s\nwant %s", got, goldenWalletState)
	}
	req, err := EncodeLoadRequest(sampleRequest())
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(req); got != goldenLoadRequest {
		t.Fatalf("load request encoding changed:\n got %s\nwant %s", got, goldenLoadRequest)
	}
	// The digest is SHA-256 of the length-prefixed domain and encoding.
	var want bytes.Buffer
	for _, part := range [][]byte{[]byte("GridPay load request v1"), req} {
		binary.Write(&want, binary.BigEndian, uint32(len(part)))
		want.Write(part)
	}
	sum := sha256.Sum256(want.Bytes())
	if !bytes.Equal(LoadRequestDigest(req), sum[:]) {
		t.Fatal("digest construction changed")
	}
	// No two kinds of signature share a digest.
	digests := [][]byte{LoadRequestDigest(req), LoadAllowDigest(req), LoadReportDigest(req), WalletStateDigest(req), PaymentInstructionDigest(req)}
	for i := range digests {
		for j := i + 1; j < len(digests); j++ {
			if bytes.Equal(digests[i], digests[j]) {
				t.Fatalf("digests %d and %d coincide", i, j)
			}
		}
	}
	if LoadID("T-1.a", 42) != "load-T-1.a-42" {
		t.Fatalf("LoadID = %q", LoadID("T-1.a", 42))
	}
}

func TestLoadRoundTrips(t *testing.T) {
	big := sampleRequest()
	big.TokenSerial = strings.Repeat("t", 64)
	big.CertSerial = strings.Repeat("f", 64)
	big.CustomerID = strings.Repeat("c", 64)
	big.Account = strings.Repeat("9", 64)
	big.Nonce = bytes.Repeat([]byte{9}, MaxNonceSize)
	big.Sequence, big.WalletSequence = 1<<63+5, 1<<63+4
	big.WalletLastLoad = LoadID(big.TokenSerial, big.WalletSequence)
	big.WalletBalance, big.Amount = money.Max-1, 1
	first := sampleRequest()
	first.Sequence, first.WalletSequence, first.WalletLastLoad, first.WalletBalance = 1, 0, "", 0
	for name, r := range map[string]LoadRequest{"sample": sampleRequest(), "largest": big, "first load": first} {
		enc, err := EncodeLoadRequest(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(enc) > MaxLoadRequestSize {
			t.Fatalf("%s: %d bytes exceed the cap", name, len(enc))
		}
		got, err := DecodeLoadRequest(enc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if again, _ := EncodeLoadRequest(got); !bytes.Equal(again, enc) || got.Amount != r.Amount || got.Sequence != r.Sequence ||
			!got.Timestamp.Equal(r.Timestamp) || got.Timestamp.Location() != time.UTC || got.Account != r.Account {
			t.Fatalf("%s: round trip %+v", name, got)
		}
	}

	a := sampleAllow(t)
	a.StateSignature = bytes.Repeat([]byte{2}, MaxSignatureSize)
	enc, err := EncodeLoadAllow(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeLoadAllow(enc)
	if err != nil || !bytes.Equal(got.State, a.State) || !bytes.Equal(got.StateSignature, a.StateSignature) || !got.Expires.Equal(a.Expires) ||
		got.PrevSequence != 6 || len(enc) > MaxLoadAllowSize {
		t.Fatalf("allow round trip: %+v %v", got, err)
	}

	for _, kind := range []ReportKind{ReportReceipt, ReportError, ReportState} {
		r := sampleReport(t, kind)
		enc, err := EncodeLoadReport(r)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		got, err := DecodeLoadReport(enc)
		if err != nil || got.Kind != kind || got.ErrorText != r.ErrorText || !bytes.Equal(got.State, r.State) || got.LoadID != r.LoadID {
			t.Fatalf("%s round trip: %+v %v", kind, got, err)
		}
	}
	// A wallet that never took a load reports no state.
	empty := LoadReport{LoadHeader: sampleHeader(TypeLoadReport, "8f12ab", 0), Kind: ReportState}
	enc, err = EncodeLoadReport(empty)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := DecodeLoadReport(enc); err != nil || got.State != nil || got.Sequence != 0 {
		t.Fatalf("empty wallet: %+v %v", got, err)
	}
}

func wantField(t *testing.T, what string, err error, field string) {
	t.Helper()
	var le *LoadMessageError
	if !errors.As(err, &le) || le.Field != field || !errors.Is(err, ErrBadLoadMessage) {
		t.Errorf("%s: got %v, want an error naming %q", what, err, field)
	}
}

func TestLoadValidate(t *testing.T) {
	reqCases := []struct {
		field string
		edit  func(r *LoadRequest)
	}{
		{fVersion, func(r *LoadRequest) { r.Version = 2 }},
		{fType, func(r *LoadRequest) { r.Type = TypeLoadReport }},
		{fToken, func(r *LoadRequest) { r.TokenSerial = "10 79" }},
		{fCert, func(r *LoadRequest) { r.CertSerial = "8F12AB" }},
		{fKeyVersion, func(r *LoadRequest) { r.KeyVersion = 2 }},
		{fAlgorithm, func(r *LoadRequest) { r.Algorithm = 9 }},
		{fNonce, func(r *LoadRequest) { r.Nonce = make([]byte, 15) }},
		{fTimestamp, func(r *LoadRequest) { r.Timestamp = r.Timestamp.Add(time.Millisecond) }},
		{fTimestamp, func(r *LoadRequest) { r.Timestamp = time.Unix(0, 0) }},
		{fSequence, func(r *LoadRequest) { r.Sequence, r.WalletSequence, r.WalletLastLoad = 0, 0, "" }},
		{fCustomer, func(r *LoadRequest) { r.CustomerID = "C3/1" }},
		{fAccount, func(r *LoadRequest) { r.Account = "" }},
		{fAccount, func(r *LoadRequest) { r.Account = "9100 0000" }},
		{fBalance, func(r *LoadRequest) { r.WalletBalance = -1 }},
		{fWalletSeq, func(r *LoadRequest) { r.WalletSequence = 7 }},
		{fWalletLoad, func(r *LoadRequest) { r.WalletLastLoad = LoadID(sampleToken, 5) }},
		{fWalletLoad, func(r *LoadRequest) { r.WalletSequence = 0 }},
		{fAmount, func(r *LoadRequest) { r.Amount = 0 }},
		{fAmount, func(r *LoadRequest) { r.WalletBalance, r.Amount = money.Max, 1 }},
		{fCurrency, func(r *LoadRequest) { r.Currency = "USD" }},
	}
	for _, c := range reqCases {
		r := sampleRequest()
		c.edit(&r)
		_, err := EncodeLoadRequest(r)
		wantField(t, "request "+c.field, err, c.field)
	}

	allowCases := []struct {
		field string
		edit  func(a *LoadAllow)
	}{
		{fLoadID, func(a *LoadAllow) { a.LoadID = LoadID(sampleToken, 8) }},
		{fExpires, func(a *LoadAllow) { a.Expires = a.Timestamp }},
		{fPrevSequence, func(a *LoadAllow) { a.PrevSequence = 7 }},
		{fStateSig, func(a *LoadAllow) { a.StateSignature = nil }},
		{fState, func(a *LoadAllow) { a.State = a.State[:10] }},
		{fState, func(a *LoadAllow) { a.CustomerID = "C9" }},
		{fState, func(a *LoadAllow) { a.CertSerial = "abcd" }},
		{fState, func(a *LoadAllow) { a.Amount = 150001 }},
		{fAmount, func(a *LoadAllow) { a.Amount = 0 }},
	}
	for _, c := range allowCases {
		a := sampleAllow(t)
		c.edit(&a)
		_, err := EncodeLoadAllow(a)
		wantField(t, "allow "+c.field, err, c.field)
	}

	reportCases := []struct {
		field string
		kind  ReportKind
		edit  func(r *LoadReport)
	}{
		{fKind, ReportState, func(r *LoadReport) { r.Kind = 4 }},
		{fLoadSequence, ReportReceipt, func(r *LoadReport) { r.LoadSequence, r.LoadID = 0, "" }},
		{fLoadSequence, ReportState, func(r *LoadReport) { r.LoadSequence = 3 }},
		{fLoadID, ReportReceipt, func(r *LoadReport) { r.LoadID = "load-x-7" }},
		{fSequence, ReportReceipt, func(r *LoadReport) { r.LoadSequence, r.LoadID, r.Attempt = 8, LoadID(sampleToken, 8), 8 }},
		{fSequence, ReportError, func(r *LoadReport) { r.LoadSequence, r.LoadID = 7, LoadID(sampleToken, 7) }},
		{fAttempt, ReportState, func(r *LoadReport) { r.Attempt = 6 }},
		{fErrorCode, ReportError, func(r *LoadReport) { r.ErrorCode = 0 }},
		{fErrorCode, ReportState, func(r *LoadReport) { r.ErrorText = "boom" }},
		{fErrorText, ReportError, func(r *LoadReport) { r.ErrorText = "caf\u00e9" }},
		{fErrorText, ReportError, func(r *LoadReport) { r.ErrorText = strings.Repeat("x", MaxErrorTextLen+1) }},
		{fBalance, ReportState, func(r *LoadReport) { r.WalletBalance = 150001 }},
		{fState, ReportState, func(r *LoadReport) { r.Sequence, r.Attempt = 8, 8 }},
		{fState, ReportState, func(r *LoadReport) { r.State = nil }},
		{fState, ReportState, func(r *LoadReport) { r.Sequence = 0 }},
	}
	for _, c := range reportCases {
		r := sampleReport(t, c.kind)
		c.edit(&r)
		_, err := EncodeLoadReport(r)
		wantField(t, "report "+c.field, err, c.field)
	}

	stateCases := []struct {
		field string
		edit  func(s *WalletState)
	}{
		{fVersion, func(s *WalletState) { s.Version = 2 }},
		{fSequence, func(s *WalletState) { s.Sequence = 0 }},
		{fLastLoad, func(s *WalletState) { s.LastLoadID = "load-other-7" }},
		{fBalance, func(s *WalletState) { s.Balance = money.Max + 1 }},
		{fSigner, func(s *WalletState) { s.SignerSerial = "" }},
		{fAlgorithm, func(s *WalletState) { s.Algorithm = 0 }},
		{fSignedAt, func(s *WalletState) { s.SignedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	for _, c := range stateCases {
		s := sampleState()
		c.edit(&s)
		_, err := EncodeWalletState(s)
		wantField(t, "state "+c.field, err, c.field)
	}
}

func TestLoadDecodeRefuses(t *testing.T) {
	good, _ := hex.DecodeString(goldenLoadRequest)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	const tsAt = 2 + 17 + 7 + 2 + 17 // after version, type, token, cert, key version, algorithm, nonce
	cases := []struct {
		name, field string
		in          []byte
	}{
		{"empty", fVersion, nil},
		{"version 2", fVersion, mutate(func(b []byte) []byte { b[0] = 2; return b })},
		{"an allow's type", fType, mutate(func(b []byte) []byte { b[1] = byte(TypeLoadAllow); return b })},
		{"trailing byte", fTrailing, append(bytes.Clone(good), 0)},
		{"truncated", fCurrency, good[:len(good)-1]},
		{"oversize", fSize, make([]byte, MaxLoadRequestSize+1)},
		{"timestamp far in the future", fTimestamp, mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[tsAt:], 1<<63)
			return b
		})},
		{"amount wraps negative", fAmount, mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[len(b)-4-8:], 1<<63)
			return b
		})},
	}
	for _, c := range cases {
		_, err := DecodeLoadRequest(c.in)
		wantField(t, c.name, err, c.field)
	}
	if _, err := DecodeLoadRequest(good); err != nil {
		t.Fatalf("the golden encoding does not decode: %v", err)
	}
	// Each decoder refuses the others' messages.
	allow, err := EncodeLoadAllow(sampleAllow(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeLoadReport(allow); !errors.Is(err, ErrBadLoadMessage) {
		t.Fatalf("an allow decoded as a report: %v", err)
	}
	if _, err := DecodeLoadAllow(good); !errors.Is(err, ErrBadLoadMessage) {
		t.Fatalf("a request decoded as an allow: %v", err)
	}
	if _, err := DecodeWalletState(make([]byte, MaxWalletStateSize+1)); !errors.Is(err, ErrBadLoadMessage) {
		t.Fatalf("oversize state: %v", err)
	}
}

func certFor(t *testing.T, key crypto.Signer, serial int64) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyLoadMessages(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, key := range map[string]crypto.Signer{"ecdsa": ecKey, "rsa": rsaKey} {
		t.Run(name, func(t *testing.T) {
			alg, err := AlgorithmFor(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			cert := certFor(t, key, 0x8f12ab)
			r := sampleRequest()
			r.Algorithm = alg
			enc, err := EncodeLoadRequest(r)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := Sign(key, alg, LoadRequestDigest(enc))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := VerifyLoadRequest(cert, enc, sig); err != nil || got.Amount != 50000 {
				t.Fatalf("good request: %+v %v", got, err)
			}
			tampered := bytes.Clone(enc)
			tampered[len(tampered)-4-1] ^= 1 // the amount's last byte
			if _, err := VerifyLoadRequest(cert, tampered, sig); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("tampered request: %v", err)
			}
			if _, err := VerifyLoadRequest(certFor(t, other, 0x8f12ab), enc, sig); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrWrongAlgorithm) {
				t.Fatalf("another key: %v", err)
			}
			if _, err := VerifyLoadRequest(cert, enc, nil); !errors.Is(err, ErrUnsigned) {
				t.Fatalf("unsigned: %v", err)
			}
			if _, err := VerifyLoadRequest(cert, enc, make([]byte, MaxSignatureSize+1)); !errors.Is(err, ErrUnsigned) {
				t.Fatalf("oversize signature: %v", err)
			}
			// The same signature presented as a report's does not verify.
			if _, err := VerifyLoadReport(cert, enc, sig); !errors.Is(err, ErrBadLoadMessage) {
				t.Fatalf("request as report: %v", err)
			}
		})
	}

	// A request claiming RSA but signed by an ECDSA key.
	cert := certFor(t, ecKey, 0x8f12ab)
	r := sampleRequest()
	r.Algorithm = AlgRSAPKCS1SHA256
	enc, _ := EncodeLoadRequest(r)
	sig, _ := ecKey.Sign(rand.Reader, LoadRequestDigest(enc), crypto.SHA256)
	if _, err := VerifyLoadRequest(cert, enc, sig); !errors.Is(err, ErrWrongAlgorithm) {
		t.Fatalf("wrong algorithm: %v", err)
	}
	// A request naming another certificate.
	r = sampleRequest()
	r.CertSerial = "01"
	enc, _ = EncodeLoadRequest(r)
	sig, _ = Sign(ecKey, AlgECDSAP256SHA256, LoadRequestDigest(enc))
	if _, err := VerifyLoadRequest(cert, enc, sig); !errors.Is(err, ErrWrongCertificate) {
		t.Fatalf("other certificate: %v", err)
	}

	// The allow: both signatures are checked.
	signer := certFor(t, ecKey, 0x5e1f)
	state, _ := EncodeWalletState(sampleState())
	stateSig, _ := Sign(ecKey, AlgECDSAP256SHA256, WalletStateDigest(state))
	a := sampleAllow(t)
	a.State, a.StateSignature = state, stateSig
	allow, err := EncodeLoadAllow(a)
	if err != nil {
		t.Fatal(err)
	}
	allowSig, _ := Sign(ecKey, AlgECDSAP256SHA256, LoadAllowDigest(allow))
	got, st, err := VerifyLoadAllow(signer, allow, allowSig)
	if err != nil || st.Balance != 150000 || got.Amount != 50000 {
		t.Fatalf("good allow: %+v %+v %v", got, st, err)
	}
	if _, _, err := VerifyLoadAllow(certFor(t, other, 0x5e1f), allow, allowSig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("allow with another key: %v", err)
	}
	// A state signature made by another key inside a well-signed allow.
	badStateSig, _ := Sign(other, AlgECDSAP256SHA256, WalletStateDigest(state))
	a.StateSignature = badStateSig
	allow2, _ := EncodeLoadAllow(a)
	allowSig2, _ := Sign(ecKey, AlgECDSAP256SHA256, LoadAllowDigest(allow2))
	if _, _, err := VerifyLoadAllow(signer, allow2, allowSig2); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged state signature: %v", err)
	}
	if _, err := VerifyWalletState(signer, state, stateSig); err != nil {
		t.Fatalf("wallet state: %v", err)
	}
	// A state signature does not pass for an allow signature.
	if _, _, err := VerifyLoadAllow(signer, allow, stateSig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("state signature as allow signature: %v", err)
	}

	// Reports.
	rep := sampleReport(t, ReportReceipt)
	repEnc, _ := EncodeLoadReport(rep)
	repSig, _ := Sign(ecKey, AlgECDSAP256SHA256, LoadReportDigest(repEnc))
	if got, err := VerifyLoadReport(cert, repEnc, repSig); err != nil || got.Kind != ReportReceipt {
		t.Fatalf("receipt: %+v %v", got, err)
	}
	if _, err := VerifyLoadReport(cert, repEnc, nil); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned receipt: %v", err)
	}
}

func TestAlgorithms(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := AlgorithmFor(p384.Public()); err == nil {
		t.Fatal("P-384 accepted")
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	digest := sha256.Sum256([]byte("x"))
	sig, err := Sign(rsaKey, AlgRSAPSSSHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyAlg(rsaKey.Public(), AlgRSAPSSSHA256, digest[:], sig); err != nil {
		t.Fatalf("PSS: %v", err)
	}
	if err := verifyAlg(rsaKey.Public(), AlgRSAPKCS1SHA256, digest[:], sig); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("PSS signature taken for PKCS #1 v1.5: %v", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := Sign(ec, AlgRSAPKCS1SHA256, digest[:]); err == nil {
		t.Fatal("an ECDSA key signed as RSA")
	}
	if TrimError("caf\u00e9\n"+strings.Repeat("x", 300)) != "caf??"+"?"+strings.Repeat("x", MaxErrorTextLen-6) {
		t.Fatalf("TrimError: %q", TrimError("caf\u00e9\n"))
	}
}

// fuzzCanonical is what every load message decoder promises: no panic,
// errors are ErrBadLoadMessage, and what it accepts re-encodes to the very
// same bytes (one message, one encoding, one digest).
func fuzzCanonical[T any](t *testing.T, b []byte, max int, decode func([]byte) (T, error), encode func(T) ([]byte, error)) {
	v, err := decode(b)
	if err != nil {
		if !errors.Is(err, ErrBadLoadMessage) {
			t.Fatalf("error %v is not ErrBadLoadMessage", err)
		}
		return
	}
	if len(b) > max {
		t.Fatalf("accepted %d bytes", len(b))
	}
	again, err := encode(v)
	if err != nil {
		t.Fatalf("decoded message does not encode: %v", err)
	}
	if !bytes.Equal(again, b) {
		t.Fatalf("not canonical:\n in  %x\n out %x", b, again)
	}
}

// Corpus in testdata/fuzz/FuzzDecodeLoad*: go test -fuzz FuzzDecodeLoadRequest ./protocol/
func FuzzDecodeLoadRequest(f *testing.F) {
	good, _ := hex.DecodeString(goldenLoadRequest)
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzCanonical(t, b, MaxLoadRequestSize, DecodeLoadRequest, EncodeLoadRequest)
	})
}

func FuzzDecodeLoadAllow(f *testing.F) {
	enc, err := EncodeLoadAllow(sampleAllow(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzCanonical(t, b, MaxLoadAllowSize, DecodeLoadAllow, EncodeLoadAllow)
	})
}

func FuzzDecodeLoadReport(f *testing.F) {
	for _, k := range []ReportKind{ReportReceipt, ReportError, ReportState} {
		enc, err := EncodeLoadReport(sampleReport(f, k))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add([]byte{1, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzCanonical(t, b, MaxLoadReportSize, DecodeLoadReport, EncodeLoadReport)
	})
}

func FuzzDecodeWalletState(f *testing.F) {
	enc, err := EncodeWalletState(sampleState())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		fuzzCanonical(t, b, MaxWalletStateSize, DecodeWalletState, EncodeWalletState)
	})
}
