package hsm

import (
	"github.com/miekg/pkcs11"
	"go.uber.org/zap"
)

// signingHandle returns the object to sign with for the private key priv:
// a session copy of it made with C_CopyObject (CKA_TOKEN false), or priv
// itself when copying is off or the token refuses.
//
// Why: some modules re-validate a persistent key on every C_SignInit.
// SoftHSM2 re-reads the key's file under a per-token lock each time, which
// serialises concurrent signers; its session objects live in memory and do
// not. The copy is made inside the token, keeps CKA_SENSITIVE and
// CKA_EXTRACTABLE (C_CopyObject may not weaken them), and dies with the
// anchor session when the Token closes. A token whose key is not
// CKA_COPYABLE answers CKR_ACTION_PROHIBITED and the key is used in place.
//
// A key deleted by another process stays usable through its copy until this
// Token is closed; DeleteKey through this Token drops the copy first.
func (t *Token) signingHandle(priv pkcs11.ObjectHandle) pkcs11.ObjectHandle {
	if t.noCopy {
		return priv
	}
	t.copyMu.Lock()
	defer t.copyMu.Unlock()
	if c, ok := t.copies[priv]; ok {
		return c
	}
	c, err := t.mod.ctx.CopyObject(t.anchor, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false)})
	if err != nil {
		t.log.Debug("hsm: key used in place (no session copy)", zap.Error(p11err("C_CopyObject", err)))
		t.copies[priv] = priv
		return priv
	}
	t.copies[priv] = c
	return c
}

// dropCopy destroys the session copy of priv, if any.
func (t *Token) dropCopy(priv pkcs11.ObjectHandle) {
	t.copyMu.Lock()
	defer t.copyMu.Unlock()
	c, ok := t.copies[priv]
	if !ok {
		return
	}
	delete(t.copies, priv)
	if c != priv {
		_ = t.mod.ctx.DestroyObject(t.anchor, c)
	}
}

// copyLost is called when signing with a copy failed because the handle is
// no longer valid: the signer falls back to the token object.
func (t *Token) copyLost(priv pkcs11.ObjectHandle) {
	t.copyMu.Lock()
	defer t.copyMu.Unlock()
	t.copies[priv] = priv
}
