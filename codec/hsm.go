package codec

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/gridpay/gridpay/hsm"
)

// HSMKeyID is the identifier of an HSM key in payload metadata: its label
// and its CKA_ID, so that a key made again under a former label is told
// apart from the one that sealed older payloads.
func HSMKeyID(ref hsm.KeyRef) string { return ref.Label + "/" + hex.EncodeToString(ref.ID) }

// LoadHSM returns a Codec encrypting with the AES key labelled current in
// the HSM and decrypting with it and the keys labelled old. A missing key
// is an error wrapping hsm.ErrKeyNotFound that says what to do; so is a key
// that could leave the HSM (extractable or not sensitive).
func LoadHSM(ctx context.Context, tok *hsm.Token, current string, old []string) (*Codec, error) {
	cur, err := hsmKey(ctx, tok, current)
	if errors.Is(err, hsm.ErrKeyNotFound) {
		return nil, fmt.Errorf("the payload key %q is not in the HSM (token %q): run `adminctl ca init` to create it: %w",
			current, tok.Info().Label, err)
	}
	if err != nil {
		return nil, err
	}
	var olds []Key
	for _, label := range old {
		k, err := hsmKey(ctx, tok, label)
		if errors.Is(err, hsm.ErrKeyNotFound) {
			return nil, fmt.Errorf("the old payload key %q (temporal.codec.old_key_labels) is not in the HSM (token %q): "+
				"payloads it sealed cannot be read without it: %w", label, tok.Info().Label, err)
		}
		if err != nil {
			return nil, err
		}
		olds = append(olds, k)
	}
	return New(cur, olds...)
}

func hsmKey(ctx context.Context, tok *hsm.Token, label string) (Key, error) {
	a, err := tok.AEAD(ctx, hsm.KeyRef{Label: label})
	if err != nil {
		return Key{}, err
	}
	if err := checkProtected(ctx, a); err != nil {
		return Key{}, err
	}
	return Key{ID: HSMKeyID(a.Ref()), Cipher: a}, nil
}

// checkProtected refuses a key whose value could be read out of the HSM:
// imported or made by hand with the wrong attributes, it would defeat the
// point of keeping it there.
func checkProtected(ctx context.Context, a *hsm.AEAD) error {
	attrs, err := a.Attributes(ctx)
	if err != nil {
		return fmt.Errorf("reading the attributes of payload key %s: %w", a.Ref(), err)
	}
	if !attrs.Sensitive || attrs.Extractable {
		return fmt.Errorf("payload key %s is extractable or not sensitive (CKA_SENSITIVE=%t, CKA_EXTRACTABLE=%t): refusing a key that can leave the HSM",
			a.Ref(), attrs.Sensitive, attrs.Extractable)
	}
	return nil
}

// EnsureHSMKey makes sure the HSM holds the payload key labelled label:
// it generates it (AES-256, sensitive, never extractable) unless it is
// there, and reports whether it did. It returns the key's identifier.
func EnsureHSMKey(ctx context.Context, tok *hsm.Token, label string) (keyID string, created bool, err error) {
	k, err := hsmKey(ctx, tok, label)
	if err == nil {
		return k.ID, false, nil
	}
	if !errors.Is(err, hsm.ErrKeyNotFound) {
		return "", false, err
	}
	a, err := tok.GenerateAESKey(ctx, label, nil)
	if errors.Is(err, hsm.ErrKeyExists) {
		// Another process made it meanwhile.
		k, err := hsmKey(ctx, tok, label)
		if err != nil {
			return "", false, err
		}
		return k.ID, false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("creating the payload key %q: %w", label, err)
	}
	return HSMKeyID(a.Ref()), true, nil
}
