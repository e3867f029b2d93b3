package pki

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/gridpay/gridpay/internal/derrors"
)

// Revoked is one revoked certificate in a CRL.
type Revoked struct {
	Serial    *big.Int
	RevokedAt time.Time
	Reason    Reason
}

// CRLRequest is the content of a CRL. The caller (the store) keeps the
// revocations and the CRL number; this package only signs.
type CRLRequest struct {
	// Number must grow with every CRL the CA publishes; verifiers refuse to
	// go back to a lower one.
	Number     *big.Int
	ThisUpdate time.Time // zero means time.Now()
	// NextUpdate is when the next CRL is due. Verifiers treat the CRL as
	// stale, and fail closed, after it.
	NextUpdate time.Time
	Revoked    []Revoked
}

// maxCRLNumberBits is RFC 5280's limit: CRL numbers fit in 20 octets.
const maxCRLNumberBits = 159

// CRL signs a certificate revocation list of the certificates this CA
// issued and returns it in DER. Each entry carries its reason code, except
// "unspecified", which RFC 5280 says to leave out. Entries are sorted by
// serial so the same content always gives the same list.
func (ca *CA) CRL(req CRLRequest) (_ []byte, err error) {
	defer derrors.Wrap(&err, "CA.CRL(%s, number %v)", describeCert(ca.certOrNil()), req.Number)
	if err := ca.check(); err != nil {
		return nil, err
	}
	if req.Number == nil || req.Number.Sign() < 0 || req.Number.BitLen() > maxCRLNumberBits {
		return nil, fieldError("Number", fmt.Sprint(req.Number), "must be a non-negative integer of at most 20 octets")
	}
	// CRL times have one-second precision; compare what will be encoded.
	thisUpdate := pickNow(req.ThisUpdate)
	nextUpdate := req.NextUpdate.UTC().Truncate(time.Second)
	if !nextUpdate.After(thisUpdate) {
		return nil, fieldError("NextUpdate", stamp(req.NextUpdate), "must be after ThisUpdate %s", stamp(thisUpdate))
	}
	if thisUpdate.Before(ca.Cert.NotBefore) || thisUpdate.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("%w: %s is valid from %s to %s, CRL dated %s",
			ErrCAValidity, describeCert(ca.Cert), stamp(ca.Cert.NotBefore), stamp(ca.Cert.NotAfter), stamp(thisUpdate))
	}
	entries := make([]x509.RevocationListEntry, 0, len(req.Revoked))
	seen := make(map[string]bool, len(req.Revoked))
	for i, r := range req.Revoked {
		field := fmt.Sprintf("Revoked[%d]", i)
		if r.Serial == nil || r.Serial.Sign() <= 0 {
			return nil, fieldError(field+".Serial", fmt.Sprint(r.Serial), "must be a positive integer")
		}
		key := string(r.Serial.Bytes())
		if seen[key] {
			return nil, fieldError(field+".Serial", SerialHex(r.Serial), "listed twice")
		}
		seen[key] = true
		revokedAt := r.RevokedAt.UTC().Truncate(time.Second)
		if r.RevokedAt.IsZero() || revokedAt.After(thisUpdate) {
			return nil, fieldError(field+".RevokedAt", stamp(r.RevokedAt), "must be set and not after ThisUpdate")
		}
		if !r.Reason.Issuable() {
			return nil, fieldError(field+".Reason", r.Reason.String(), "not a reason GridPay revokes for")
		}
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   r.Serial,
			RevocationTime: revokedAt,
			ReasonCode:     int(r.Reason),
		})
	}
	slices.SortFunc(entries, func(a, b x509.RevocationListEntry) int {
		return a.SerialNumber.Cmp(b.SerialNumber)
	})
	tmpl := &x509.RevocationList{
		Number:                    req.Number,
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Signer)
	if err != nil {
		return nil, fmt.Errorf("signing CRL: %w", err)
	}
	return der, nil
}

func (ca *CA) certOrNil() *x509.Certificate {
	if ca == nil {
		return nil
	}
	return ca.Cert
}
