package hsm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/asn1"
	"errors"
	"fmt"
)

var (
	oidP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521 = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
)

// curveParams is the CKA_EC_PARAMS value (the DER-encoded named-curve OID).
func curveParams(c elliptic.Curve) ([]byte, error) {
	var oid asn1.ObjectIdentifier
	switch c {
	case elliptic.P256():
		oid = oidP256
	case elliptic.P384():
		oid = oidP384
	case elliptic.P521():
		oid = oidP521
	default:
		return nil, fmt.Errorf("unsupported curve %s", c.Params().Name)
	}
	return asn1.Marshal(oid)
}

func curveFromParams(params []byte) (elliptic.Curve, error) {
	var oid asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(params, &oid)
	if err != nil || len(rest) > 0 {
		return nil, errors.New("CKA_EC_PARAMS is not a named-curve OID")
	}
	switch {
	case oid.Equal(oidP256):
		return elliptic.P256(), nil
	case oid.Equal(oidP384):
		return elliptic.P384(), nil
	case oid.Equal(oidP521):
		return elliptic.P521(), nil
	}
	return nil, fmt.Errorf("unsupported curve %s", oid)
}

// parseECPublicKey builds a Go key from CKA_EC_PARAMS and CKA_EC_POINT.
// PKCS#11 says CKA_EC_POINT is a DER OCTET STRING around the uncompressed
// point; some modules return the bare point, so accept both.
func parseECPublicKey(params, point []byte) (*ecdsa.PublicKey, error) {
	curve, err := curveFromParams(params)
	if err != nil {
		return nil, err
	}
	coord := (curve.Params().BitSize + 7) / 8
	raw := point
	if len(point) != 1+2*coord {
		var inner []byte
		rest, err := asn1.Unmarshal(point, &inner)
		if err != nil || len(rest) > 0 {
			return nil, errors.New("CKA_EC_POINT is neither a DER OCTET STRING nor a bare point")
		}
		raw = inner
	}
	pk, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
	if err != nil {
		return nil, fmt.Errorf("CKA_EC_POINT: %w", err)
	}
	return pk, nil
}

// ecdsaRawToDER converts the r‖s signature PKCS#11 returns (each half
// coord bytes) into the ASN.1 SEQUENCE { r INTEGER, s INTEGER } that
// crypto.Signer callers (x509, tls) expect. It allocates once: it is on
// the signing path.
func ecdsaRawToDER(raw []byte, coord int) ([]byte, error) {
	if coord <= 0 || len(raw) != 2*coord {
		return nil, fmt.Errorf("ECDSA signature is %d bytes, want %d", len(raw), 2*coord)
	}
	r, s := trimZeros(raw[:coord]), trimZeros(raw[coord:])
	if len(r) == 0 || len(s) == 0 {
		return nil, errors.New("ECDSA signature has a zero component")
	}
	rLen, sLen := derIntBodyLen(r), derIntBodyLen(s)
	body := 1 + derLenSize(rLen) + rLen + 1 + derLenSize(sLen) + sLen
	out := make([]byte, 0, 1+derLenSize(body)+body)
	out = append(out, 0x30)
	out = appendDERLen(out, body)
	out = appendDERInt(out, r, rLen)
	return appendDERInt(out, s, sLen), nil
}

func trimZeros(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// derIntBodyLen is the content length of a positive INTEGER with magnitude
// mag: a leading 0x00 keeps a set top bit from reading as negative.
func derIntBodyLen(mag []byte) int {
	if mag[0]&0x80 != 0 {
		return len(mag) + 1
	}
	return len(mag)
}

func appendDERInt(b, mag []byte, bodyLen int) []byte {
	b = append(b, 0x02)
	b = appendDERLen(b, bodyLen)
	if bodyLen > len(mag) {
		b = append(b, 0)
	}
	return append(b, mag...)
}

// derLenSize is the size of a DER length field for n.
func derLenSize(n int) int {
	if n < 0x80 {
		return 1
	}
	size := 1
	for ; n > 0; n >>= 8 {
		size++
	}
	return size
}

func appendDERLen(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	var tmp [8]byte
	i := len(tmp)
	for ; n > 0; n >>= 8 {
		i--
		tmp[i] = byte(n)
	}
	b = append(b, 0x80|byte(len(tmp)-i))
	return append(b, tmp[i:]...)
}
