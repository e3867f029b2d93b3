// Package protocol defines GridPay's signed messages: what is signed, in
// which exact encoding, so that signer and verifier can never disagree.
package protocol

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
)

// ChallengeSize is the size of a binding challenge in bytes.
const ChallengeSize = 32

// bindingProofDomain separates binding proofs from every other signature
// the key makes.
const bindingProofDomain = "GridPay binding proof v1"

// BindingProofDigest is the SHA-256 digest a USB key signs to prove, at the
// end of binding, that it holds the key of the certificate just written onto
// it: the domain, the binding workflow's ID, the certificate serial and the
// workflow's random challenge, each length-prefixed.
func BindingProofDigest(workflowID, certSerial string, challenge []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(bindingProofDomain), []byte(workflowID), []byte(certSerial), challenge} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// ErrBadSignature means a signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// VerifyDigest checks sig over a SHA-256 digest with cert's public key:
// ECDSA (ASN.1 DER) or RSA (PKCS #1 v1.5 or PSS).
func VerifyDigest(cert *x509.Certificate, digest, sig []byte) error {
	switch pub := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if ecdsa.VerifyASN1(pub, digest, sig) {
			return nil
		}
	case *rsa.PublicKey:
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig) == nil {
			return nil
		}
		if rsa.VerifyPSS(pub, crypto.SHA256, digest, sig, nil) == nil {
			return nil
		}
	default:
		return fmt.Errorf("unsupported key type %T", cert.PublicKey)
	}
	return ErrBadSignature
}

// NewChallenge returns ChallengeSize random bytes.
func NewChallenge() []byte {
	b := make([]byte, ChallengeSize)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return b
}
