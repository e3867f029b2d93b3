package unionpay

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// SigningString is what a signature covers: every field except signature,
// sorted by name, as name=value joined with '&'. Values are taken as they
// are (not URL-encoded); empty values take part too.
func SigningString(fields map[string]string) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		if k != FieldSignature {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(fields[k])
	}
	return b.String()
}

// Digest is the lower-case hex SHA-256 of the signing string: the text
// that SHA256withRSA signs.
func Digest(fields map[string]string) string {
	sum := sha256.Sum256([]byte(SigningString(fields)))
	return hex.EncodeToString(sum[:])
}

// rsaInput is the hash handed to the RSA signer: SHA-256 over the bytes of
// the hex digest (SHA256withRSA of the digest text).
func rsaInput(fields map[string]string) []byte {
	sum := sha256.Sum256([]byte(Digest(fields)))
	return sum[:]
}

// contextSigner is implemented by signers that can be cancelled (the HSM's).
type contextSigner interface {
	SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// Sign computes the signature field (base64) over fields with an RSA key:
// PKCS #1 v1.5 SHA256withRSA over the digest text.
func Sign(ctx context.Context, signer crypto.Signer, fields map[string]string) (string, error) {
	if _, ok := signer.Public().(*rsa.PublicKey); !ok {
		return "", fmt.Errorf("unionpay.Sign: the merchant key is %T, not RSA", signer.Public())
	}
	in := rsaInput(fields)
	var sig []byte
	var err error
	if cs, ok := signer.(contextSigner); ok {
		sig, err = cs.SignContext(ctx, in, crypto.SHA256)
	} else {
		sig, err = signer.Sign(rand.Reader, in, crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("unionpay.Sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// Verify checks the signature field of fields with the public key. A
// missing, undecodable or wrong signature is ErrBadSignature.
func Verify(pub *rsa.PublicKey, fields map[string]string) error {
	s, ok := fields[FieldSignature]
	if !ok || s == "" {
		return fieldErr(ErrBadSignature, FieldSignature, "missing")
	}
	sig, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fieldErr(ErrBadSignature, FieldSignature, "not base64")
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, rsaInput(fields), sig); err != nil {
		return fieldErr(ErrBadSignature, FieldSignature, "does not verify with the gateway certificate")
	}
	return nil
}

// SignFields adds certId and signature to fields, in place.
func SignFields(ctx context.Context, signer crypto.Signer, certID string, fields map[string]string) error {
	if certID == "" {
		return errors.New("unionpay.SignFields: no certId")
	}
	fields[FieldCertID] = certID
	delete(fields, FieldSignature)
	sig, err := Sign(ctx, signer, fields)
	if err != nil {
		return err
	}
	fields[FieldSignature] = sig
	return nil
}
