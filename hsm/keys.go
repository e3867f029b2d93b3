package hsm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/miekg/pkcs11"
	"go.uber.org/zap"
)

// KeyRef names a key (or another object) by CKA_LABEL, CKA_ID or both.
type KeyRef struct {
	Label string
	ID    []byte
}

// IsZero reports whether r names nothing.
func (r KeyRef) IsZero() bool { return r.Label == "" && len(r.ID) == 0 }

func (r KeyRef) String() string {
	var parts []string
	if r.Label != "" {
		parts = append(parts, fmt.Sprintf("label %q", r.Label))
	}
	if len(r.ID) > 0 {
		parts = append(parts, "id "+hex.EncodeToString(r.ID))
	}
	if len(parts) == 0 {
		return "no label or id"
	}
	return strings.Join(parts, " ")
}

func (r KeyRef) template(class uint) []*pkcs11.Attribute {
	// CKA_TOKEN: references name persistent keys, never the in-memory
	// copies a Token makes for signing (see Token.signingHandle).
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)}
	if r.Label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, r.Label))
	}
	if len(r.ID) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, r.ID))
	}
	return tmpl
}

// findKey returns the one object of class that ref names.
func (t *Token) findKey(ctx context.Context, class uint, ref KeyRef) (pkcs11.ObjectHandle, error) {
	if ref.IsZero() {
		return 0, fmt.Errorf("%w: empty key reference", ErrKeyNotFound)
	}
	hs, err := t.findObjects(ctx, ref.template(class), 2)
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 0:
		return 0, fmt.Errorf("%w: no %s with %s on token %q", ErrKeyNotFound, className(class), ref, t.info.Label)
	case 1:
		return hs[0], nil
	}
	return 0, fmt.Errorf("several %ss match %s on token %q; give both label and id", className(class), ref, t.info.Label)
}

func className(class uint) string {
	switch class {
	case pkcs11.CKO_PRIVATE_KEY:
		return "private key"
	case pkcs11.CKO_PUBLIC_KEY:
		return "public key"
	case pkcs11.CKO_SECRET_KEY:
		return "secret key"
	case pkcs11.CKO_CERTIFICATE:
		return "certificate"
	case pkcs11.CKO_DATA:
		return "data object"
	}
	return fmt.Sprintf("object of class %d", class)
}

// Signer returns a crypto.Signer for the private key ref names.
func (t *Token) Signer(ctx context.Context, ref KeyRef) (_ *Signer, err error) {
	defer wrapErr(&err, "Signer(%s)", ref)
	priv, err := t.findKey(ctx, pkcs11.CKO_PRIVATE_KEY, ref)
	if err != nil {
		return nil, err
	}
	v, err := t.attrs(ctx, priv, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_LABEL, pkcs11.CKA_ID)
	if err != nil {
		return nil, err
	}
	return t.newSigner(ctx, priv, 0, ulongAttr(v[0]), string(v[1]), v[2])
}

// newSigner reads the public half of priv; pub may be 0 (look it up).
func (t *Token) newSigner(ctx context.Context, priv, pub pkcs11.ObjectHandle, keyType uint, label string, id []byte) (*Signer, error) {
	s := &Signer{tok: t, handle: priv, label: label, id: id}
	s.signWith.Store(uint64(t.signingHandle(priv)))
	switch keyType {
	case pkcs11.CKK_EC:
		pk, err := t.ecPublicKey(ctx, pub, KeyRef{Label: label, ID: id})
		if err != nil {
			return nil, err
		}
		s.pub, s.ecCoord = pk, (pk.Curve.Params().BitSize+7)/8
	case pkcs11.CKK_RSA:
		// Modulus and exponent are public attributes of the private key
		// itself, so no public-key object is needed.
		v, err := t.attrs(ctx, priv, pkcs11.CKA_MODULUS, pkcs11.CKA_PUBLIC_EXPONENT)
		if err != nil {
			return nil, err
		}
		e := new(big.Int).SetBytes(v[1])
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
			return nil, fmt.Errorf("RSA key %s: unusable public exponent", KeyRef{label, id})
		}
		s.pub = &rsa.PublicKey{N: new(big.Int).SetBytes(v[0]), E: int(e.Int64())}
	default:
		return nil, fmt.Errorf("key %s has type %#x; only EC and RSA keys can sign here", KeyRef{label, id}, keyType)
	}
	return s, nil
}

// ecPublicKey reads the EC public key: from pub if given, else from the
// public-key object with the same ID (or label), else from a certificate
// with the same ID.
func (t *Token) ecPublicKey(ctx context.Context, pub pkcs11.ObjectHandle, ref KeyRef) (*ecdsa.PublicKey, error) {
	if pub == 0 {
		look := ref
		if len(look.ID) > 0 {
			look.Label = ""
		}
		h, err := t.findKey(ctx, pkcs11.CKO_PUBLIC_KEY, look)
		switch {
		case err == nil:
			pub = h
		case errors.Is(err, ErrKeyNotFound) && len(ref.ID) > 0:
			return t.ecPublicKeyFromCert(ctx, ref)
		default:
			return nil, err
		}
	}
	v, err := t.attrs(ctx, pub, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
	if err != nil {
		return nil, err
	}
	return parseECPublicKey(v[0], v[1])
}

func (t *Token) ecPublicKeyFromCert(ctx context.Context, ref KeyRef) (*ecdsa.PublicKey, error) {
	certs, err := t.certs(ctx, KeyRef{ID: ref.ID})
	if err != nil {
		return nil, err
	}
	for _, c := range certs {
		if pk, ok := c.Cert.PublicKey.(*ecdsa.PublicKey); ok {
			return pk, nil
		}
	}
	return nil, fmt.Errorf("%w: no public key or certificate for %s on token %q", ErrKeyNotFound, ref, t.info.Label)
}

// GenerateECDSAKey generates a P-256 key pair on the token. The private
// key is a token object, private, sensitive, never extractable and can only
// sign; both halves carry label and id. A nil id gets a random 16-byte one.
// A key already named label or id gives ErrKeyExists.
func (t *Token) GenerateECDSAKey(ctx context.Context, label string, id []byte) (_ *Signer, err error) {
	defer wrapErr(&err, "GenerateECDSAKey(%q)", label)
	params, err := curveParams(elliptic.P256())
	if err != nil {
		return nil, err
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)}
	pub := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params)}
	return t.generatePair(ctx, label, id, pkcs11.CKK_EC, mech, pub)
}

// GenerateRSAKey generates an RSA key pair of bits (at least 2048) with
// public exponent 65537, with the same properties as GenerateECDSAKey.
func (t *Token) GenerateRSAKey(ctx context.Context, label string, id []byte, bits int) (_ *Signer, err error) {
	defer wrapErr(&err, "GenerateRSAKey(%q, %d)", label, bits)
	if bits < 2048 {
		return nil, fmt.Errorf("RSA keys must have at least 2048 bits")
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, nil)}
	pub := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
	}
	return t.generatePair(ctx, label, id, pkcs11.CKK_RSA, mech, pub)
}

func (t *Token) generatePair(ctx context.Context, label string, id []byte, keyType uint, mech []*pkcs11.Mechanism, pubExtra []*pkcs11.Attribute) (*Signer, error) {
	if label == "" {
		return nil, errors.New("a key needs a label")
	}
	id, err := idOrRandom(id)
	if err != nil {
		return nil, err
	}
	t.createMu.Lock()
	defer t.createMu.Unlock()
	if err := t.ensureNoKey(ctx, label, id); err != nil {
		return nil, err
	}
	common := func(class uint) []*pkcs11.Attribute {
		return []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		}
	}
	pubTmpl := append(common(pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
	)
	pubTmpl = append(pubTmpl, pubExtra...)
	privTmpl := append(common(pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	)
	var pub, priv pkcs11.ObjectHandle
	err = t.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
		var err error
		pub, priv, err = t.mod.ctx.GenerateKeyPair(sh, mech, pubTmpl, privTmpl)
		return p11err("C_GenerateKeyPair", err)
	})
	if err != nil {
		return nil, err
	}
	s, err := t.newSigner(ctx, priv, pub, keyType, label, id)
	if err != nil {
		// Do not leave a half-usable key behind under a taken name.
		_ = t.destroy(context.WithoutCancel(ctx), priv, pub)
		return nil, err
	}
	t.log.Info("hsm: key pair generated", zap.String("key_label", label), zap.String("key_id", hex.EncodeToString(id)))
	return s, nil
}

// ensureNoKey refuses a label or id that any key on the token already uses.
func (t *Token) ensureNoKey(ctx context.Context, label string, id []byte) error {
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_SECRET_KEY} {
		for _, ref := range []KeyRef{{Label: label}, {ID: id}} {
			hs, err := t.findObjects(ctx, ref.template(class), 1)
			if err != nil {
				return err
			}
			if len(hs) > 0 {
				return fmt.Errorf("%w: a %s with %s is on token %q", ErrKeyExists, className(class), ref, t.info.Label)
			}
		}
	}
	return nil
}

func idOrRandom(id []byte) ([]byte, error) {
	if len(id) > 0 {
		return append([]byte(nil), id...), nil
	}
	id = make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	return id, nil
}

// KeyAttributes are the protection attributes of a key, for audits.
type KeyAttributes struct {
	Sensitive        bool // CKA_SENSITIVE
	AlwaysSensitive  bool // CKA_ALWAYS_SENSITIVE
	Extractable      bool // CKA_EXTRACTABLE
	NeverExtractable bool // CKA_NEVER_EXTRACTABLE
	Token            bool // CKA_TOKEN
	Private          bool // CKA_PRIVATE
}

// KeyAttributes reads the protection attributes of the private or secret
// key ref names.
func (t *Token) KeyAttributes(ctx context.Context, ref KeyRef) (_ KeyAttributes, err error) {
	defer wrapErr(&err, "KeyAttributes(%s)", ref)
	h, err := t.findKey(ctx, pkcs11.CKO_PRIVATE_KEY, ref)
	if errors.Is(err, ErrKeyNotFound) {
		h, err = t.findKey(ctx, pkcs11.CKO_SECRET_KEY, ref)
	}
	if err != nil {
		return KeyAttributes{}, err
	}
	return t.keyAttributes(ctx, h)
}

func (t *Token) keyAttributes(ctx context.Context, h pkcs11.ObjectHandle) (KeyAttributes, error) {
	v, err := t.attrs(ctx, h,
		pkcs11.CKA_SENSITIVE, pkcs11.CKA_ALWAYS_SENSITIVE,
		pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_NEVER_EXTRACTABLE,
		pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE)
	if err != nil {
		return KeyAttributes{}, err
	}
	return KeyAttributes{
		Sensitive:        boolAttr(v[0]),
		AlwaysSensitive:  boolAttr(v[1]),
		Extractable:      boolAttr(v[2]),
		NeverExtractable: boolAttr(v[3]),
		Token:            boolAttr(v[4]),
		Private:          boolAttr(v[5]),
	}, nil
}

// DeleteKey destroys every private, public and secret key ref names. It
// leaves certificates alone. Nothing matching gives ErrKeyNotFound.
func (t *Token) DeleteKey(ctx context.Context, ref KeyRef) (err error) {
	defer wrapErr(&err, "DeleteKey(%s)", ref)
	if ref.IsZero() {
		return fmt.Errorf("%w: empty key reference", ErrKeyNotFound)
	}
	t.createMu.Lock()
	defer t.createMu.Unlock()
	var all []pkcs11.ObjectHandle
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY, pkcs11.CKO_SECRET_KEY} {
		hs, err := t.findObjects(ctx, ref.template(class), 64)
		if err != nil {
			return err
		}
		all = append(all, hs...)
	}
	if len(all) == 0 {
		return fmt.Errorf("%w: no key with %s on token %q", ErrKeyNotFound, ref, t.info.Label)
	}
	for _, h := range all {
		t.dropCopy(h)
	}
	return t.destroy(ctx, all...)
}
