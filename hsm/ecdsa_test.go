package hsm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"testing"
)

func TestECDSARawToDER(t *testing.T) {
	type sig struct{ R, S *big.Int }
	for _, tc := range []struct {
		name  string
		coord int
		r, s  []byte
	}{
		{"small", 32, []byte{1}, []byte{2}},
		{"high bit needs padding", 32, bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0x80}, 32)},
		{"leading zeros trimmed", 32, append([]byte{0, 0, 0x7f}, bytes.Repeat([]byte{1}, 29)...), append([]byte{0, 0x80}, bytes.Repeat([]byte{1}, 30)...)},
		{"P-521 long-form length", 66, append([]byte{1}, bytes.Repeat([]byte{0xff}, 65)...), append([]byte{1}, bytes.Repeat([]byte{0xee}, 65)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := make([]byte, 2*tc.coord)
			copy(raw[tc.coord-len(tc.r):tc.coord], tc.r)
			copy(raw[2*tc.coord-len(tc.s):], tc.s)
			der, err := ecdsaRawToDER(raw, tc.coord)
			if err != nil {
				t.Fatal(err)
			}
			want, err := asn1.Marshal(sig{new(big.Int).SetBytes(tc.r), new(big.Int).SetBytes(tc.s)})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(der, want) {
				t.Fatalf("got  %x\nwant %x", der, want)
			}
			if cap(der) != len(der) {
				t.Errorf("capacity %d for %d bytes: the size computation is off", cap(der), len(der))
			}
		})
	}
}

func TestECDSARawToDERVerifies(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		d := sha256.Sum256([]byte{byte(i)})
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		raw := make([]byte, 64)
		r.FillBytes(raw[:32])
		s.FillBytes(raw[32:])
		der, err := ecdsaRawToDER(raw, 32)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(&k.PublicKey, d[:], der) {
			t.Fatalf("signature %d does not verify after conversion", i)
		}
	}
}

func TestECDSARawToDERRejects(t *testing.T) {
	if _, err := ecdsaRawToDER(make([]byte, 63), 32); err == nil {
		t.Error("odd-length signature accepted")
	}
	if _, err := ecdsaRawToDER(make([]byte, 64), 32); err == nil {
		t.Error("all-zero signature accepted")
	}
}

func TestParseECPublicKey(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	params, err := curveParams(elliptic.P256())
	if err != nil {
		t.Fatal(err)
	}
	point, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := asn1.Marshal(point)
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string][]byte{"DER-wrapped": wrapped, "bare": point} {
		got, err := parseECPublicKey(params, p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.Equal(&k.PublicKey) {
			t.Errorf("%s: parsed key differs", name)
		}
	}
	if _, err := parseECPublicKey(params, wrapped[:20]); err == nil {
		t.Error("truncated point accepted")
	}
	p384, _ := curveParams(elliptic.P384())
	if _, err := parseECPublicKey(p384, wrapped); err == nil {
		t.Error("P-256 point accepted as P-384")
	}
}
