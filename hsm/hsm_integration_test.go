//go:build integration

package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/testenv"
)

// One SoftHSM for the whole package: SOFTHSM2_CONF is read once per process.
var (
	softhsm *testenv.SoftHSM
	main1   testenv.TestToken // shared by the tests that do not need a token of their own
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gridpay-hsm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	softhsm, err = testenv.NewSoftHSM(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	main1 = testenv.TestToken{Label: "hsm-test", SOPIN: "so-pin-0001", UserPIN: "user-pin-0001"}
	main1.Serial, err = softhsm.InitToken(main1.Label, main1.SOPIN, main1.UserPIN)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// seq keeps names unique when tests run more than once (-count) against
// the same tokens.
var seq atomic.Int64

// uniq returns base with a suffix unique in this process.
func uniq(base string) string { return fmt.Sprintf("%s-%d", base, seq.Add(1)) }

// newID returns a fresh CKA_ID.
func newID(t testing.TB) []byte {
	t.Helper()
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	return id
}

func openToken(t testing.TB, tt testenv.TestToken, opts hsm.Options) *hsm.Token {
	t.Helper()
	tok, err := hsm.OpenToken(softhsm.ModulePath(), tt.Selector(), []byte(tt.UserPIN), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tok.Close(); err != nil {
			t.Error(err)
		}
	})
	return tok
}

func TestECDSASignVerify(t *testing.T) {
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	label, id := uniq("ecdsa-roundtrip"), newID(t)
	s, err := tok.GenerateECDSAKey(ctx, label, id)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve.Params().Name != "P-256" {
		t.Fatalf("Public() = %T %v, want a P-256 key", s.Public(), s.Public())
	}
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		hh := h.New()
		hh.Write([]byte("bill 2025-11 customer 4401"))
		d := hh.Sum(nil)
		sig, err := s.Sign(rand.Reader, d, h)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(pub, d, sig) {
			t.Fatalf("%s: signature does not verify", h)
		}
		d[0] ^= 1
		if ecdsa.VerifyASN1(pub, d, sig) {
			t.Fatalf("%s: signature verifies for another digest", h)
		}
	}

	// Found again by label, by id, and through a URI.
	for _, ref := range []hsm.KeyRef{{Label: label}, {ID: id}} {
		s2, err := tok.Signer(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if !pub.Equal(s2.Public()) {
			t.Errorf("%v: found a different public key", ref)
		}
	}
	u, err := hsm.ParseURI(fmt.Sprintf("pkcs11:token=%s;object=%s;id=%s", main1.Label, label, pct(id)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Signer(ctx, u.KeyRef()); err != nil {
		t.Errorf("by URI: %v", err)
	}

	d := sha256.Sum256(nil)
	if _, err := s.Sign(nil, d[:31], crypto.SHA256); err == nil {
		t.Error("a short digest was signed")
	}
	if _, err := s.Sign(nil, d[:], &rsa.PSSOptions{Hash: crypto.SHA256}); err == nil {
		t.Error("PSS options accepted for an ECDSA key")
	}

	// A taken label or id is refused, and nothing is created.
	if _, err := tok.GenerateECDSAKey(ctx, label, newID(t)); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("same label: err = %v, want ErrKeyExists", err)
	}
	other := uniq("other-label")
	if _, err := tok.GenerateECDSAKey(ctx, other, id); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("same id: err = %v, want ErrKeyExists", err)
	}
	if _, err := tok.Signer(ctx, hsm.KeyRef{Label: other}); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("a refused generation left a key behind: %v", err)
	}
	if _, err := tok.Signer(ctx, hsm.KeyRef{Label: "no-such-key"}); !errors.Is(err, hsm.ErrKeyNotFound) || !strings.Contains(err.Error(), "no-such-key") {
		t.Errorf("missing key: err = %v, want ErrKeyNotFound naming it", err)
	}
}

func TestRSASignVerify(t *testing.T) {
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	if _, err := tok.GenerateRSAKey(ctx, uniq("rsa-small"), nil, 1024); err == nil {
		t.Fatal("a 1024-bit RSA key was generated")
	}
	s, err := tok.GenerateRSAKey(ctx, uniq("rsa-roundtrip"), nil, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := s.Public().(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 2048 || pub.E != 65537 {
		t.Fatalf("Public() = %T, want a 2048-bit RSA key with e=65537", s.Public())
	}
	msg := []byte("load-allow: amount 150000 fen, seq 17")
	digests := map[crypto.Hash][]byte{}
	d256 := sha256.Sum256(msg)
	d384 := sha512.Sum384(msg)
	d512 := sha512.Sum512(msg)
	digests[crypto.SHA256], digests[crypto.SHA384], digests[crypto.SHA512] = d256[:], d384[:], d512[:]

	for h, d := range digests {
		t.Run("PKCS1v15/"+h.String(), func(t *testing.T) {
			sig, err := s.Sign(rand.Reader, d, h)
			if err != nil {
				t.Fatal(err)
			}
			if err := rsa.VerifyPKCS1v15(pub, h, d, sig); err != nil {
				t.Fatal(err)
			}
		})
		for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, 20} {
			t.Run(fmt.Sprintf("PSS/%s/salt%d", h, salt), func(t *testing.T) {
				sig, err := s.Sign(rand.Reader, d, &rsa.PSSOptions{SaltLength: salt, Hash: h})
				if err != nil {
					t.Fatal(err)
				}
				want := salt
				if salt == rsa.PSSSaltLengthAuto {
					want = rsa.PSSSaltLengthEqualsHash // documented choice
				}
				if err := rsa.VerifyPSS(pub, h, d, sig, &rsa.PSSOptions{SaltLength: want}); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	if _, err := s.Sign(nil, d256[:], crypto.SHA1); err == nil {
		t.Error("SHA-1 (with a 32-byte digest) accepted")
	}
}

func TestConcurrentSigning(t *testing.T) {
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	s, err := tok.GenerateECDSAKey(ctx, uniq("ecdsa-concurrent"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := s.Public().(*ecdsa.PublicKey)
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				d := sha256.Sum256(fmt.Appendf(nil, "%d/%d", g, i))
				sig, err := s.SignContext(ctx, d[:], crypto.SHA256)
				if err == nil && !ecdsa.VerifyASN1(pub, d[:], sig) {
					err = fmt.Errorf("signature %d/%d does not verify", g, i)
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d signatures failed; first: %v", len(failures), goroutines*each, failures[0])
	}
	opened, discarded := tok.PoolStatsForTest()
	t.Logf("%d signatures on %d sessions", goroutines*each, opened)
	if discarded != 0 {
		t.Errorf("%d sessions discarded", discarded)
	}
}

func TestKeysNeverExtractable(t *testing.T) {
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	ec, err := tok.GenerateECDSAKey(ctx, uniq("ecdsa-extract"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := tok.GenerateRSAKey(ctx, uniq("rsa-extract"), nil, 2048)
	if err != nil {
		t.Fatal(err)
	}
	aes, err := tok.GenerateAESKey(ctx, uniq("aes-extract"), nil)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		name  string
		read  func(context.Context, uint) ([]byte, error)
		attrs func(context.Context) (hsm.KeyAttributes, error)
		ref   hsm.KeyRef
	}
	for _, k := range []key{
		{"ECDSA", ec.ReadAttributeForTest, ec.Attributes, ec.Ref()},
		{"RSA", rs.ReadAttributeForTest, rs.Attributes, rs.Ref()},
		{"AES", aes.ReadAttributeForTest, aes.Attributes, aes.Ref()},
	} {
		secret := uint(pkcs11.CKA_VALUE)
		if k.name == "RSA" {
			secret = pkcs11.CKA_PRIVATE_EXPONENT
		}
		v, err := k.read(ctx, secret)
		if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Errorf("%s: reading the secret value gave %d bytes, err = %v; want CKR_ATTRIBUTE_SENSITIVE", k.name, len(v), err)
		}
		want := hsm.KeyAttributes{Sensitive: true, AlwaysSensitive: true, NeverExtractable: true, Token: true, Private: true}
		a, err := k.attrs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a != want {
			t.Errorf("%s: attributes %+v, want %+v", k.name, a, want)
		}
		if a2, err := tok.KeyAttributes(ctx, k.ref); err != nil || a2 != a {
			t.Errorf("%s: KeyAttributes by reference = %+v, %v", k.name, a2, err)
		}
	}
}

func TestWrongPIN(t *testing.T) {
	tt := softhsm.NewTestToken(t, uniq("hsm-wrong-pin"))
	sel := tt.Selector()
	_, err := hsm.OpenToken(softhsm.ModulePath(), sel, []byte("not-the-pin"), hsm.Options{})
	if !errors.Is(err, hsm.ErrWrongPIN) {
		t.Fatalf("err = %v, want ErrWrongPIN", err)
	}
	if strings.Contains(err.Error(), "not-the-pin") {
		t.Errorf("error %q contains the PIN", err)
	}
	m, err := hsm.OpenModule(softhsm.ModulePath())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ti, err := m.FindToken(sel)
	if err != nil {
		t.Fatal(err)
	}
	if !ti.UserPINCountLow {
		t.Errorf("CKF_USER_PIN_COUNT_LOW not set after a wrong PIN (flags %#x)", ti.Flags)
	}
	tok := openToken(t, tt, hsm.Options{})
	ti, err = tok.Refresh()
	if err != nil {
		t.Fatal(err)
	}
	if ti.UserPINCountLow || ti.UserPINLocked {
		t.Errorf("PIN-count flags still set after a good login (flags %#x)", ti.Flags)
	}
	// While logged in, the token accepts any PIN for a second login; the
	// package must not.
	if _, err := hsm.OpenToken(softhsm.ModulePath(), sel, []byte("not-the-pin"), hsm.Options{}); !errors.Is(err, hsm.ErrWrongPIN) {
		t.Errorf("second open with a wrong PIN while logged in: err = %v, want ErrWrongPIN", err)
	}
}

func TestAESGCM(t *testing.T) {
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	aesLabel := uniq("aes-gcm")
	a, err := tok.GenerateAESKey(ctx, aesLabel, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateAESKey(ctx, aesLabel, nil); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("duplicate AES label: err = %v, want ErrKeyExists", err)
	}
	plain := []byte("customer 4401, card 6222 **** 0001")
	aad := []byte("workflow Payment:4401:2025-11")
	for _, tc := range []struct{ plain, aad []byte }{{plain, aad}, {nil, aad}, {plain, nil}, {nil, nil}} {
		sealed, err := a.Seal(tc.plain, tc.aad)
		if err != nil {
			t.Fatal(err)
		}
		if len(sealed) != len(tc.plain)+hsm.Overhead {
			t.Fatalf("sealed %d bytes to %d", len(tc.plain), len(sealed))
		}
		if len(tc.plain) > 0 && bytes.Contains(sealed, tc.plain) {
			t.Fatal("plaintext visible in the sealed output")
		}
		got, err := a.Open(sealed, tc.aad)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tc.plain) {
			t.Fatalf("Open = %q, want %q", got, tc.plain)
		}
	}

	s1, _ := a.Seal(plain, aad)
	s2, _ := a.Seal(plain, aad)
	if bytes.Equal(s1[:hsm.NonceSize], s2[:hsm.NonceSize]) {
		t.Fatal("two seals used the same nonce")
	}
	// Found again by reference, the key opens what the first handle sealed.
	a2, err := tok.AEAD(ctx, hsm.KeyRef{Label: aesLabel})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a2.Open(s1, aad); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("re-found key: %q, %v", got, err)
	}

	refuse := func(name string, sealed, aad []byte) {
		t.Helper()
		got, err := a.Open(sealed, aad)
		if !errors.Is(err, hsm.ErrDecrypt) {
			t.Errorf("%s: err = %v, want ErrDecrypt", name, err)
		}
		if got != nil {
			t.Errorf("%s: returned %d bytes of plaintext", name, len(got))
		}
	}
	for _, pos := range []int{0, hsm.NonceSize, hsm.NonceSize + 5, len(s1) - 1} {
		bad := bytes.Clone(s1)
		bad[pos] ^= 0x01
		refuse(fmt.Sprintf("bit flipped at %d", pos), bad, aad)
	}
	refuse("tampered aad", s1, []byte("workflow Payment:4401:2025-12"))
	refuse("missing aad", s1, nil)
	refuse("truncated by one byte", s1[:len(s1)-1], aad)
	refuse("truncated to a nonce", s1[:hsm.NonceSize], aad)
	refuse("empty", nil, aad)
	// The session that saw the failures still works.
	if got, err := a.Open(s1, aad); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("after failures: %q, %v", got, err)
	}
}

// selfSigned makes a certificate for signer's key, signed by the token.
func selfSigned(t *testing.T, s *hsm.Signer, cn string, notBefore time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(notBefore.UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"GridPay test"}},
		NotBefore:    notBefore,
		NotAfter:     notBefore.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.Public(), s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		t.Fatalf("token-signed certificate does not verify: %v", err)
	}
	return c
}

func TestCertificateObjects(t *testing.T) {
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	id, certLabel := newID(t), uniq("cert-key")
	s, err := tok.GenerateECDSAKey(ctx, certLabel, id)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	c1 := selfSigned(t, s, "customer 4401", now.Add(-time.Hour))
	ref := hsm.KeyRef{Label: certLabel, ID: id}

	if err := tok.WriteCertificate(ctx, ref.Label, ref.ID, c1); err != nil {
		t.Fatal(err)
	}
	got, err := tok.Certificate(ctx, hsm.KeyRef{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(c1) {
		t.Fatal("certificate read back differs")
	}
	if err := tok.WriteCertificate(ctx, ref.Label, ref.ID, c1); !errors.Is(err, hsm.ErrObjectExists) {
		t.Errorf("second write: err = %v, want ErrObjectExists", err)
	}

	c2 := selfSigned(t, s, "customer 4401 renewed", now)
	if err := tok.ReplaceCertificate(ctx, ref.Label, ref.ID, c2); err != nil {
		t.Fatal(err)
	}
	all, err := tok.Certificates(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || !all[0].Cert.Equal(c2) || all[0].Label != certLabel || !bytes.Equal(all[0].ID, id) {
		t.Fatalf("after replace: %d certificates, want only the new one", len(all))
	}

	if err := tok.DeleteCertificate(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Certificate(ctx, ref); !errors.Is(err, hsm.ErrObjectNotFound) {
		t.Errorf("after delete: err = %v, want ErrObjectNotFound", err)
	}
	if err := tok.DeleteCertificate(ctx, ref); !errors.Is(err, hsm.ErrObjectNotFound) {
		t.Errorf("second delete: err = %v, want ErrObjectNotFound", err)
	}
	// The key is untouched by certificate deletion, and DeleteKey removes it.
	if err := tok.DeleteKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Signer(ctx, ref); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Errorf("after DeleteKey: err = %v, want ErrKeyNotFound", err)
	}
}

func TestDataObjects(t *testing.T) {
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	const app = "gridpay-wallet"
	for _, private := range []bool{true, false} {
		label := uniq(fmt.Sprintf("balance-private-%v", private))
		obj := hsm.DataObject{Application: app, Label: label, Value: []byte("balance=0"), Private: private}
		if err := tok.WriteData(ctx, obj); err != nil {
			t.Fatal(err)
		}
		got, err := tok.ReadData(ctx, app, label)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Value, obj.Value) || got.Private != private {
			t.Fatalf("read %+v, want %+v", got, obj)
		}
		if err := tok.WriteData(ctx, obj); !errors.Is(err, hsm.ErrObjectExists) {
			t.Errorf("second write: err = %v, want ErrObjectExists", err)
		}
		if err := tok.ReplaceData(ctx, app, label, []byte("balance=150000;seq=17")); err != nil {
			t.Fatal(err)
		}
		got, err = tok.ReadData(ctx, app, label)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Value) != "balance=150000;seq=17" || got.Private != private {
			t.Fatalf("after replace: %+v", got)
		}
		if err := tok.DeleteData(ctx, app, label); err != nil {
			t.Fatal(err)
		}
		if _, err := tok.ReadData(ctx, app, label); !errors.Is(err, hsm.ErrObjectNotFound) {
			t.Errorf("after delete: err = %v, want ErrObjectNotFound", err)
		}
	}
	if err := tok.ReplaceData(ctx, app, "never-written", []byte("x")); !errors.Is(err, hsm.ErrObjectNotFound) {
		t.Errorf("replace of a missing object: err = %v, want ErrObjectNotFound", err)
	}
}

func TestTokenAdministration(t *testing.T) {
	m, err := hsm.OpenModule(softhsm.ModulePath())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	label := uniq("hsm-admin")
	so, pin1, pin2 := []byte("so-admin-1"), []byte("pin-admin-1"), []byte("pin-admin-2")

	ti, err := m.InitToken(label, so)
	if err != nil {
		t.Fatal(err)
	}
	if ti.Label != label || ti.Serial == "" || !ti.Initialized || ti.UserPINInitialized {
		t.Fatalf("new token info %+v", ti)
	}
	if ti.Manufacturer != "SoftHSM project" || ti.Model != "SoftHSM v2" {
		t.Errorf("manufacturer %q model %q", ti.Manufacturer, ti.Model)
	}
	tokens, err := m.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	blank := 0
	for _, x := range tokens {
		if !x.Initialized {
			blank++
		}
	}
	if blank != 1 {
		t.Errorf("%d blank slots after InitToken, want SoftHSM's one spare", blank)
	}
	if _, err := m.InitToken(label, so); err == nil {
		t.Error("a second token with the same label was initialised")
	}

	sel := hsm.Selector{Serial: ti.Serial}
	if err := m.InitUserPIN(sel, []byte("wrong-so"), pin1); !errors.Is(err, hsm.ErrWrongPIN) {
		t.Errorf("InitUserPIN with a wrong SO PIN: err = %v, want ErrWrongPIN", err)
	}
	if err := m.InitUserPIN(sel, so, pin1); err != nil {
		t.Fatal(err)
	}
	ti, err = m.FindToken(sel)
	if err != nil {
		t.Fatal(err)
	}
	if !ti.UserPINInitialized || !ti.LoginRequired || ti.UserPINLocked || ti.UserPINToBeChanged {
		t.Errorf("flags after InitUserPIN: %+v", ti)
	}

	tok, err := m.OpenToken(sel, pin1, hsm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.GenerateECDSAKey(context.Background(), "admin-key", nil); err != nil {
		t.Fatal(err)
	}
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}

	if err := m.ChangeUserPIN(sel, []byte("not-pin-1"), pin2); !errors.Is(err, hsm.ErrWrongPIN) {
		t.Errorf("ChangeUserPIN with a wrong old PIN: err = %v, want ErrWrongPIN", err)
	}
	if err := m.ChangeUserPIN(sel, pin1, pin2); err != nil {
		t.Fatal(err)
	}
	if _, err := m.OpenToken(sel, pin1, hsm.Options{}); !errors.Is(err, hsm.ErrWrongPIN) {
		t.Errorf("old PIN after change: err = %v, want ErrWrongPIN", err)
	}
	tok, err = m.OpenToken(hsm.Selector{Label: label}, pin2, hsm.Options{})
	if err != nil {
		t.Fatalf("new PIN after change: %v", err)
	}
	defer tok.Close()
	if _, err := tok.Signer(context.Background(), hsm.KeyRef{Label: "admin-key"}); err != nil {
		t.Errorf("key made before the PIN change: %v", err)
	}
	if err := m.InitUserPIN(sel, so, pin1); !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ANOTHER_ALREADY_LOGGED_IN)) {
		t.Errorf("InitUserPIN while the user is logged in: err = %v", err)
	}
}

func TestOpenURIWithPINFile(t *testing.T) {
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	uriLabel, uriID := uniq("uri-key"), newID(t)
	if _, err := tok.GenerateECDSAKey(ctx, uriLabel, uriID); err != nil {
		t.Fatal(err)
	}
	pinFile := filepath.Join(t.TempDir(), "user.pin")
	if err := os.WriteFile(pinFile, []byte(main1.UserPIN+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u := &hsm.URI{Token: main1.Label, Object: uriLabel, ID: uriID, ModulePath: softhsm.ModulePath(), PINSource: hsm.PINFromFile(pinFile)}
	u, err := hsm.ParseURI(u.String())
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := hsm.OpenURI(u, "", hsm.Options{PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tok2.Close()
	s, err := tok2.Signer(ctx, u.KeyRef())
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("via URI"))
	sig, err := s.Sign(nil, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("signature does not verify")
	}
	if err := os.Chmod(pinFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := hsm.OpenURI(u, "", hsm.Options{}); err == nil || !strings.Contains(err.Error(), "other users") {
		t.Errorf("world-readable PIN file: err = %v", err)
	}
}

// TestPKCS11ToolSeesKey checks the key with OpenSC's pkcs11-tool, a client
// that shares no code with this package.
func TestPKCS11ToolSeesKey(t *testing.T) {
	tool, err := exec.LookPath("pkcs11-tool")
	if err != nil {
		t.Fatalf("pkcs11-tool (OpenSC) not installed: run `make deps` or `apt-get install opensc`: %v", err)
	}
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	toolLabel, toolID := uniq("tool-visible"), newID(t)
	if _, err := tok.GenerateECDSAKey(ctx, toolLabel, toolID); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool, "--module", softhsm.ModulePath(), "--token-label", main1.Label,
		"--list-objects", "--type", "privkey", "--login", "--pin", main1.UserPIN)
	cmd.Env = append(os.Environ(), softhsm.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	var block string
	for b := range strings.SplitSeq(string(out), "Private Key Object") {
		if strings.Contains(b, "label:      "+toolLabel+"\n") {
			block = b
		}
	}
	if block == "" {
		t.Fatalf("pkcs11-tool does not list the key:\n%s", out)
	}
	t.Logf("pkcs11-tool lists:%s", block)
	for _, want := range []string{"EC", "ID:         " + hex.EncodeToString(toolID), "sign", "sensitive", "always sensitive", "never extract"} {
		if !strings.Contains(block, want) {
			t.Errorf("pkcs11-tool's entry lacks %q:\n%s", want, block)
		}
	}
	for _, line := range strings.Split(block, "\n") {
		if strings.Contains(line, "Access:") && strings.Contains(strings.ReplaceAll(line, "never extract", ""), "extractable") {
			t.Errorf("pkcs11-tool reports the key extractable: %s", line)
		}
	}
}

func TestSoftHSMHarness(t *testing.T) {
	if got := testenv.SoftHSMForTest(t); got != softhsm {
		t.Error("SoftHSMForTest did not return the SoftHSM TestMain made")
	}
	if _, err := testenv.NewSoftHSM(t.TempDir()); err == nil {
		t.Error("a second SoftHSM directory was accepted in one process")
	}
	if env := softhsm.Env(); len(env) != 1 || env[0] != "SOFTHSM2_CONF="+softhsm.ConfPath() {
		t.Errorf("Env() = %q", env)
	}
	if os.Getenv("SOFTHSM2_CONF") != softhsm.ConfPath() {
		t.Errorf("SOFTHSM2_CONF = %q, want %q", os.Getenv("SOFTHSM2_CONF"), softhsm.ConfPath())
	}
	conf, err := os.ReadFile(softhsm.ConfPath())
	if err != nil {
		t.Fatal(err)
	}
	want := "directories.tokendir = " + filepath.Join(softhsm.Dir(), "tokens")
	if !strings.Contains(string(conf), want) || !strings.Contains(string(conf), "objectstore.backend = file") {
		t.Errorf("softhsm2.conf:\n%s", conf)
	}
	// softhsm2-util, another client, sees the tokens through Env too.
	cmd := exec.Command("softhsm2-util", "--show-slots")
	cmd.Env = append(os.Environ(), softhsm.Env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), main1.Serial) {
		t.Errorf("softhsm2-util does not list token %s:\n%s", main1.Serial, out)
	}
}

// pct percent-encodes every byte, as RFC 7512 ids are written.
func pct(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "%%%02X", c)
	}
	return sb.String()
}

// findRaw lists the private keys labelled label that are token objects
// (persistent) or session objects (in memory), through raw PKCS#11.
func findRaw(t *testing.T, r *rawSession, label string, onToken bool) []pkcs11.ObjectHandle {
	t.Helper()
	if err := r.ctx.FindObjectsInit(r.sh, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, onToken),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}); err != nil {
		t.Fatal(err)
	}
	defer r.ctx.FindObjectsFinal(r.sh)
	hs, _, err := r.ctx.FindObjects(r.sh, 10)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// The in-token session copy a Token signs with keeps the key's protection:
// sensitive, not extractable, its value unreadable; DeleteKey removes it.
func TestSessionKeyCopyKeepsProtection(t *testing.T) {
	ctx := context.Background()
	tok := openToken(t, main1, hsm.Options{})
	signer, err := tok.GenerateECDSAKey(ctx, "copy-check", nil)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("copy"))
	sig, err := signer.Sign(nil, digest[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(signer.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatalf("sign through the copy: %v", err)
	}
	raw := openRaw(t, softhsm.ModulePath(), main1.Serial, main1.UserPIN, "copy-check")
	copies := findRaw(t, raw, "copy-check", false)
	if len(copies) != 1 {
		t.Fatalf("want one session copy, found %d", len(copies))
	}
	attrs, err := raw.ctx.GetAttributeValue(raw.sh, copies[0], []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
	})
	if err != nil || attrs[0].Value[0] != 1 || attrs[1].Value[0] != 0 {
		t.Fatalf("copy lost its protection: sensitive=%v extractable=%v err=%v", attrs[0].Value, attrs[1].Value, err)
	}
	if _, err := raw.ctx.GetAttributeValue(raw.sh, copies[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err == nil {
		t.Fatal("the session copy's private value was readable")
	}
	// A copy destroyed behind the Token's back: the signer falls back to the
	// token key instead of failing.
	if err := raw.ctx.DestroyObject(raw.sh, copies[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := signer.Sign(nil, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("signing after the copy vanished: %v", err)
	}
	// Lookups by reference see the token key only.
	if _, err := tok.Signer(ctx, hsm.KeyRef{Label: "copy-check"}); err != nil {
		t.Fatalf("lookup confused by the copy: %v", err)
	}
	if err := tok.DeleteKey(ctx, signer.Ref()); err != nil {
		t.Fatal(err)
	}
	if n := len(findRaw(t, raw, "copy-check", false)); n != 0 {
		t.Fatalf("%d session copies left after DeleteKey", n)
	}
	if n := len(findRaw(t, raw, "copy-check", true)); n != 0 {
		t.Fatalf("%d token keys left after DeleteKey", n)
	}
}
