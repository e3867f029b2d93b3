package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
)

const (
	minRSABits = 2048
	// Larger RSA keys buy nothing here and make every verification slow;
	// the cap also bounds the work a hostile CSR can cause.
	maxRSABits = 8192
)

// checkPublicKey accepts what USB keys and HSMs do well: ECDSA on P-256 or
// P-384, and RSA from 2048 to 8192 bits.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("%w: ECDSA curve %s (allowed: P-256, P-384)", ErrWeakKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSABits {
			return fmt.Errorf("%w: RSA key of %d bits (minimum %d)", ErrWeakKey, bits, minRSABits)
		}
		if bits > maxRSABits {
			return fmt.Errorf("%w: RSA key of %d bits (maximum %d)", ErrWeakKey, bits, maxRSABits)
		}
		return nil
	case ed25519.PublicKey:
		return fmt.Errorf("%w: Ed25519 (allowed: ECDSA P-256/P-384, RSA ≥ %d)", ErrWeakKey, minRSABits)
	case nil:
		return fmt.Errorf("%w: missing or unsupported public key", ErrWeakKey)
	default:
		return fmt.Errorf("%w: key type %T (allowed: ECDSA P-256/P-384, RSA ≥ %d)", ErrWeakKey, pub, minRSABits)
	}
}

// sameKey reports whether two public keys are equal.
func sameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// keyID computes a subject key identifier by RFC 7093 method 1: the leftmost
// 160 bits of the SHA-256 of the subjectPublicKey bits. Computing it
// ourselves keeps identifiers the same whatever Go version made the
// certificate.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("computing key identifier: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("computing key identifier: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// serialBytes is the size of the random part of a serial number.
const serialBytes = 16

// newSerial returns a random 128-bit serial number with the top bit set.
// Setting it makes every serial exactly 128 bits long: always positive,
// never zero, always 17 bytes in DER (a 0x00 sign byte, then 16), well under
// the 20-byte limit of RFC 5280, and 127 random bits, far beyond the 64 the
// CA/Browser Forum asks for.
func newSerial(r io.Reader) (*big.Int, error) {
	var b [serialBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	b[0] |= 0x80
	return new(big.Int).SetBytes(b[:]), nil
}

// SerialHex formats a serial number as lower-case hex without separators,
// the form GridPay uses in logs, the database and error messages.
func SerialHex(n *big.Int) string {
	if n == nil {
		return ""
	}
	if n.Sign() < 0 {
		return "-" + hex.EncodeToString(new(big.Int).Neg(n).Bytes())
	}
	if n.Sign() == 0 {
		return "00"
	}
	return hex.EncodeToString(n.Bytes())
}
