package hsm

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/miekg/pkcs11"
)

func TestDigestInfoPrefixes(t *testing.T) {
	oids := map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
		crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2},
		crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3},
	}
	for h, oid := range oids {
		digest := make([]byte, h.Size())
		digest[0] = 0xAB
		in, err := pkcs1DigestInfo(h, digest)
		if err != nil {
			t.Fatal(err)
		}
		var di struct {
			Alg    pkix.AlgorithmIdentifier
			Digest []byte
		}
		rest, err := asn1.Unmarshal(in, &di)
		if err != nil || len(rest) > 0 {
			t.Fatalf("%s: DigestInfo does not parse: %v", h, err)
		}
		if !di.Alg.Algorithm.Equal(oid) || di.Digest[0] != 0xAB || len(di.Digest) != h.Size() {
			t.Errorf("%s: DigestInfo names %v with %d bytes", h, di.Alg.Algorithm, len(di.Digest))
		}
	}
	if _, err := pkcs1DigestInfo(crypto.SHA1, make([]byte, 20)); err == nil {
		t.Error("SHA-1 accepted")
	}
}

func TestPSSSaltLength(t *testing.T) {
	pub := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 2047), E: 65537}
	for _, tc := range []struct {
		salt    int
		wantErr bool
	}{
		{rsa.PSSSaltLengthAuto, false},
		{rsa.PSSSaltLengthEqualsHash, false},
		{20, false},
		{-7, true},
		{256, true},
	} {
		m, err := pssMechanism(pub, crypto.SHA256, &rsa.PSSOptions{SaltLength: tc.salt})
		if (err != nil) != tc.wantErr {
			t.Errorf("salt %d: err = %v, wantErr %v", tc.salt, err, tc.wantErr)
			continue
		}
		if err == nil && m[0].Mechanism != pkcs11.CKM_RSA_PKCS_PSS {
			t.Errorf("salt %d: mechanism %#x", tc.salt, m[0].Mechanism)
		}
	}
	// Auto and EqualsHash both mean the hash length.
	auto, _ := pssMechanism(pub, crypto.SHA256, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	want := pkcs11.NewPSSParams(pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256, 32)
	if string(auto[0].Parameter) != string(want) {
		t.Error("PSSSaltLengthAuto did not map to a 32-byte salt")
	}
}
