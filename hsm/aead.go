package hsm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/miekg/pkcs11"
	"go.uber.org/zap"
)

// Sizes of the AEAD's output: Seal returns nonce ‖ ciphertext ‖ tag.
const (
	NonceSize = 12
	TagSize   = 16
	Overhead  = NonceSize + TagSize
)

// aadContext is prepended to the caller's additional data. It binds sealed
// messages to this construction and version, and it keeps the AAD handed to
// the token non-empty: SoftHSM2 builds with C++ library assertions abort
// the process on CKM_AES_GCM with an empty AAD (SoftHSMv2 issue #605).
var aadContext = []byte("gridpay/hsm AES-256-GCM v1\x00")

// AEAD encrypts and authenticates with an AES-256 key that never leaves the
// token (CKM_AES_GCM). It is safe for concurrent use. Nonces are random, so
// one key should seal well under 2^32 messages.
type AEAD struct {
	tok    *Token
	handle pkcs11.ObjectHandle
	label  string
	id     []byte
	// useKey is the object C_EncryptInit and C_DecryptInit use: a session
	// copy of handle, or handle itself (see Token.signingHandle: SoftHSM2
	// re-reads a token key's file under a per-token lock at every init).
	useKey atomic.Uint64
}

func newAEAD(t *Token, h pkcs11.ObjectHandle, label string, id []byte) *AEAD {
	a := &AEAD{tok: t, handle: h, label: label, id: id}
	a.useKey.Store(uint64(t.signingHandle(h)))
	return a
}

// withKey runs op with the key to use, falling back to the token object
// for good when the session copy has gone.
func (a *AEAD) withKey(op func(key pkcs11.ObjectHandle) error) error {
	key := pkcs11.ObjectHandle(a.useKey.Load())
	err := op(key)
	if err != nil && key != a.handle && (hasCode(err, pkcs11.CKR_KEY_HANDLE_INVALID) || hasCode(err, pkcs11.CKR_OBJECT_HANDLE_INVALID)) {
		a.tok.copyLost(a.handle)
		a.useKey.Store(uint64(a.handle))
		err = op(a.handle)
	}
	return err
}

// GenerateAESKey generates an AES-256 key on the token: token object,
// private, sensitive, never extractable, for encryption and decryption
// only. A nil id gets a random one; a key already named label or id gives
// ErrKeyExists.
func (t *Token) GenerateAESKey(ctx context.Context, label string, id []byte) (_ *AEAD, err error) {
	defer wrapErr(&err, "GenerateAESKey(%q)", label)
	if label == "" {
		return nil, errors.New("a key needs a label")
	}
	id, err = idOrRandom(id)
	if err != nil {
		return nil, err
	}
	t.createMu.Lock()
	defer t.createMu.Unlock()
	if err := t.ensureNoKey(ctx, label, id); err != nil {
		return nil, err
	}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}
	var h pkcs11.ObjectHandle
	err = t.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
		var err error
		h, err = t.mod.ctx.GenerateKey(sh, mech, tmpl)
		return p11err("C_GenerateKey", err)
	})
	if err != nil {
		return nil, err
	}
	t.log.Info("hsm: AES key generated", zap.String("key_label", label), zap.String("key_id", hex.EncodeToString(id)))
	return newAEAD(t, h, label, id), nil
}

// AEAD returns the AES key ref names.
func (t *Token) AEAD(ctx context.Context, ref KeyRef) (_ *AEAD, err error) {
	defer wrapErr(&err, "AEAD(%s)", ref)
	h, err := t.findKey(ctx, pkcs11.CKO_SECRET_KEY, ref)
	if err != nil {
		return nil, err
	}
	v, err := t.attrs(ctx, h, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_LABEL, pkcs11.CKA_ID)
	if err != nil {
		return nil, err
	}
	if kt := ulongAttr(v[0]); kt != pkcs11.CKK_AES {
		return nil, fmt.Errorf("secret key %s has type %#x, not AES", ref, kt)
	}
	return newAEAD(t, h, string(v[1]), v[2]), nil
}

// Ref names the key.
func (a *AEAD) Ref() KeyRef { return KeyRef{Label: a.label, ID: append([]byte(nil), a.id...)} }

// Attributes reads the key's protection attributes.
func (a *AEAD) Attributes(ctx context.Context) (KeyAttributes, error) {
	return a.tok.keyAttributes(ctx, a.handle)
}

// Seal encrypts and authenticates plaintext and authenticates aad, returning
// nonce ‖ ciphertext ‖ tag.
func (a *AEAD) Seal(plaintext, aad []byte) ([]byte, error) {
	return a.SealContext(context.Background(), plaintext, aad)
}

// SealContext is Seal with a context bounding the wait for a session.
func (a *AEAD) SealContext(ctx context.Context, plaintext, aad []byte) (_ []byte, err error) {
	defer wrapErr(&err, "Seal(%s)", KeyRef{a.label, a.id})
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	fullAAD := withContext(aad)
	var sealed []byte
	err = a.withKey(func(key pkcs11.ObjectHandle) error {
		return a.tok.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
			// miekg/pkcs11 copies the IV into C memory that it frees only in
			// Free, so that a module which writes its own IV back (CloudHSM
			// does) can be read with IV(). Free must therefore come after
			// Encrypt, and the IV to publish is the one IV() reports.
			params := pkcs11.NewGCMParams(nonce, fullAAD, TagSize*8)
			defer params.Free()
			mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
			if err := a.tok.mod.ctx.EncryptInit(sh, mech, key); err != nil {
				return p11err("C_EncryptInit", err)
			}
			ct, err := a.tok.mod.ctx.Encrypt(sh, plaintext)
			if err != nil {
				return p11err("C_Encrypt", err)
			}
			used := params.IV()
			if len(used) != NonceSize {
				return fmt.Errorf("module used a %d-byte GCM IV, want %d", len(used), NonceSize)
			}
			if len(ct) != len(plaintext)+TagSize {
				return fmt.Errorf("module returned %d bytes for %d bytes of plaintext", len(ct), len(plaintext))
			}
			sealed = make([]byte, 0, NonceSize+len(ct))
			sealed = append(append(sealed, used...), ct...)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return sealed, nil
}

// Open checks and decrypts the output of Seal. Any alteration of the nonce,
// ciphertext, tag or aad, and input too short to hold a nonce and a tag,
// gives ErrDecrypt and no plaintext at all.
func (a *AEAD) Open(sealed, aad []byte) ([]byte, error) {
	return a.OpenContext(context.Background(), sealed, aad)
}

// OpenContext is Open with a context bounding the wait for a session.
func (a *AEAD) OpenContext(ctx context.Context, sealed, aad []byte) (_ []byte, err error) {
	defer wrapErr(&err, "Open(%s)", KeyRef{a.label, a.id})
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: input is %d bytes, shorter than nonce and tag", ErrDecrypt, len(sealed))
	}
	nonce, ct := sealed[:NonceSize], sealed[NonceSize:]
	fullAAD := withContext(aad)
	var plain []byte
	err = a.withKey(func(key pkcs11.ObjectHandle) error {
		return a.tok.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
			params := pkcs11.NewGCMParams(nonce, fullAAD, TagSize*8)
			defer params.Free()
			mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
			if err := a.tok.mod.ctx.DecryptInit(sh, mech, key); err != nil {
				return p11err("C_DecryptInit", err)
			}
			pt, err := a.tok.mod.ctx.Decrypt(sh, ct)
			if err != nil {
				return p11err("C_Decrypt", err)
			}
			plain = pt
			return nil
		})
	})
	if err != nil {
		// Modules disagree on the code for a bad tag (SoftHSM2 answers
		// CKR_GENERAL_ERROR, others CKR_ENCRYPTED_DATA_INVALID), so any
		// failure of C_Decrypt itself counts as failed authentication.
		var pe *Error
		if errors.As(err, &pe) && pe.Op == "C_Decrypt" && !sessionFatal(err) {
			return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
		}
		return nil, err
	}
	return plain, nil
}

func withContext(aad []byte) []byte {
	out := make([]byte, 0, len(aadContext)+len(aad))
	return append(append(out, aadContext...), aad...)
}
