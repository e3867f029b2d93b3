package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// Signer is a private key on a token, usable as a crypto.Signer: ECDSA
// (P-256, and P-384/P-521 keys found on a token) and RSA (PKCS #1 v1.5 and
// PSS). It holds the key's object handle, which stays valid for every
// session of the process, so signing costs one C_SignInit and one C_Sign on
// a pooled session. It is safe for concurrent use; it stops working when its
// Token is closed.
type Signer struct {
	tok     *Token
	handle  pkcs11.ObjectHandle
	pub     crypto.PublicKey
	label   string
	id      []byte
	ecCoord int // byte length of r and s; 0 for RSA
	// signWith is the object C_SignInit uses: a session copy of handle, or
	// handle itself (see Token.signingHandle).
	signWith atomic.Uint64
}

var _ crypto.Signer = (*Signer)(nil)

// The mechanism lists hold no per-call data, so one copy serves all calls.
var (
	mechECDSA    = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)}
	mechRSAPKCS1 = []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}
)

// Public returns the *ecdsa.PublicKey or *rsa.PublicKey read from the token.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// Label is the key's CKA_LABEL.
func (s *Signer) Label() string { return s.label }

// ID is (a copy of) the key's CKA_ID.
func (s *Signer) ID() []byte { return append([]byte(nil), s.id...) }

// Ref names the key for FindKey, KeyAttributes and DeleteKey.
func (s *Signer) Ref() KeyRef { return KeyRef{Label: s.label, ID: s.ID()} }

// Attributes reads the key's protection attributes.
func (s *Signer) Attributes(ctx context.Context) (KeyAttributes, error) {
	return s.tok.keyAttributes(ctx, s.handle)
}

// Sign signs digest, which must be the output of opts.HashFunc(). rand is
// ignored: the token has its own generator. Pass *rsa.PSSOptions for
// RSA-PSS; anything else gives PKCS #1 v1.5 for RSA keys.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext is Sign with a context bounding the wait for a free session.
func (s *Signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := s.sign(ctx, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("hsm: Sign(%s): %w", KeyRef{Label: s.label, ID: s.id}, err)
	}
	return sig, nil
}

func (s *Signer) sign(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts == nil {
		return nil, errors.New("no hash function given (opts is nil)")
	}
	h := opts.HashFunc()
	if h == 0 {
		return nil, errors.New("signing a message without a hash function is not supported")
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("digest is %d bytes, %s needs %d", len(digest), h, h.Size())
	}
	mech, input := mechECDSA, digest
	switch pub := s.pub.(type) {
	case *ecdsa.PublicKey:
		if _, ok := opts.(*rsa.PSSOptions); ok {
			return nil, errors.New("PSS options given for an ECDSA key")
		}
	case *rsa.PublicKey:
		var err error
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			mech, err = pssMechanism(pub, h, pss)
		} else {
			mech = mechRSAPKCS1
			input, err = pkcs1DigestInfo(h, digest)
		}
		if err != nil {
			return nil, err
		}
	}
	var sig []byte
	signOnce := func(key pkcs11.ObjectHandle) error {
		return s.tok.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
			if err := s.tok.mod.ctx.SignInit(sh, mech, key); err != nil {
				return p11err("C_SignInit", err)
			}
			var err error
			sig, err = s.tok.mod.ctx.Sign(sh, input)
			return p11err("C_Sign", err)
		})
	}
	key := pkcs11.ObjectHandle(s.signWith.Load())
	err := signOnce(key)
	if err != nil && key != s.handle && (hasCode(err, pkcs11.CKR_KEY_HANDLE_INVALID) || hasCode(err, pkcs11.CKR_OBJECT_HANDLE_INVALID)) {
		// The session copy is gone; sign with the token key from now on.
		s.tok.copyLost(s.handle)
		s.signWith.Store(uint64(s.handle))
		err = signOnce(s.handle)
	}
	if err != nil {
		return nil, err
	}
	if s.ecCoord > 0 {
		return ecdsaRawToDER(sig, s.ecCoord)
	}
	return sig, nil
}

// DigestInfo prefixes (RFC 8017 §9.2 note 1): CKM_RSA_PKCS pads what it is
// given, so the DER header naming the hash must be prepended here.
var digestInfoPrefix = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

func pkcs1DigestInfo(h crypto.Hash, digest []byte) ([]byte, error) {
	prefix, ok := digestInfoPrefix[h]
	if !ok {
		return nil, fmt.Errorf("RSA PKCS #1 v1.5 with %s is not supported (use SHA-256, SHA-384 or SHA-512)", h)
	}
	out := make([]byte, 0, len(prefix)+len(digest))
	return append(append(out, prefix...), digest...), nil
}

var pssHashes = map[crypto.Hash][2]uint{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// pssMechanism builds CKM_RSA_PKCS_PSS parameters. PSSSaltLengthAuto means
// "as long as possible" to crypto/rsa, but many tokens cap the salt at the
// hash length and FIPS 186-5 requires that cap, so here Auto and
// EqualsHash both use the hash length; Go's verifier (and TLS 1.3, which
// requires it) accept that.
func pssMechanism(pub *rsa.PublicKey, h crypto.Hash, opts *rsa.PSSOptions) ([]*pkcs11.Mechanism, error) {
	ids, ok := pssHashes[h]
	if !ok {
		return nil, fmt.Errorf("RSA-PSS with %s is not supported (use SHA-256, SHA-384 or SHA-512)", h)
	}
	salt := opts.SaltLength
	switch {
	case salt == rsa.PSSSaltLengthAuto || salt == rsa.PSSSaltLengthEqualsHash:
		salt = h.Size()
	case salt < 0:
		return nil, fmt.Errorf("invalid PSS salt length %d", salt)
	}
	// EMSA-PSS (RFC 8017 §9.1.1): emLen ≥ hLen + sLen + 2.
	emLen := (pub.N.BitLen() - 1 + 7) / 8
	if salt > emLen-h.Size()-2 {
		return nil, fmt.Errorf("PSS salt of %d bytes is too long for a %d-bit key", salt, pub.N.BitLen())
	}
	params := pkcs11.NewPSSParams(ids[0], ids[1], uint(salt))
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, params)}, nil
}
