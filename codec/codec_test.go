package codec

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	"github.com/gridpay/gridpay/hsm"
)

// softCipher is AES-256-GCM in memory, standing in for the HSM's: same
// output layout, same error for a failed authentication.
type softCipher struct {
	aead  cipher.AEAD
	calls atomic.Int64
}

func newSoftCipher(t testing.TB) *softCipher {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &softCipher{aead: aead}
}

func (s *softCipher) SealContext(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	s.calls.Add(1)
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plaintext, aad), nil
}

func (s *softCipher) OpenContext(_ context.Context, sealed, aad []byte) ([]byte, error) {
	s.calls.Add(1)
	if len(sealed) < hsm.Overhead {
		return nil, fmt.Errorf("%w: too short", hsm.ErrDecrypt)
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", hsm.ErrDecrypt, err)
	}
	return plain, nil
}

func newCodec(t testing.TB, current Key, old ...Key) *Codec {
	t.Helper()
	c, err := New(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func softKey(t testing.TB, id string) Key { return Key{ID: id, Cipher: newSoftCipher(t)} }

// customer is the kind of value GridPay's workflows carry.
type customer struct {
	CustomerID string
	Name       string
	AmountFen  int64
}

var alice = customer{CustomerID: "C31000002", Name: "Zhejiang Steel Works", AmountFen: 1234567}

func toPayloads(t testing.TB, values ...any) []*commonpb.Payload {
	t.Helper()
	ps, err := converter.GetDefaultDataConverter().ToPayloads(values...)
	if err != nil {
		t.Fatal(err)
	}
	return ps.Payloads
}

func TestRoundTrip(t *testing.T) {
	c := newCodec(t, softKey(t, "k1"))
	plain := toPayloads(t, alice, "bill B20260931000002", []byte{0, 1, 2}, nil)
	enc, err := c.Encode(plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != len(plain) {
		t.Fatalf("%d payloads in, %d out", len(plain), len(enc))
	}
	for i, p := range enc {
		if bytes.Contains(p.Data, []byte("C31000002")) || bytes.Contains(p.Data, []byte("B2026")) || bytes.Contains(p.Data, []byte("json/plain")) {
			t.Errorf("payload %d: plaintext or its encoding visible in %q", i, p.Data)
		}
		if proto.Equal(p, plain[i]) {
			t.Errorf("payload %d not encoded", i)
		}
	}
	dec, err := c.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range plain {
		if !proto.Equal(dec[i], plain[i]) {
			t.Errorf("payload %d: decoded %v, want %v (metadata included)", i, dec[i], plain[i])
		}
	}
	// Nothing was changed in place.
	if IsEncrypted(plain[0]) || !IsEncrypted(enc[0]) {
		t.Error("Encode mutated its input or did not encrypt")
	}

	// Through the data converter, as the SDK uses it.
	dc := c.DataConverter()
	p, err := dc.ToPayload(alice)
	if err != nil {
		t.Fatal(err)
	}
	var got customer
	if err := dc.FromPayload(p, &got); err != nil || got != alice {
		t.Fatalf("data converter round trip: %+v %v", got, err)
	}
	if err := converter.GetDefaultDataConverter().FromPayload(p, &got); err == nil {
		t.Fatal("the default converter read an encrypted payload")
	}
}

func TestMetadataShape(t *testing.T) {
	c := newCodec(t, softKey(t, "gridpay-payload-key/0a1b"))
	enc, err := c.Encode(toPayloads(t, alice))
	if err != nil {
		t.Fatal(err)
	}
	md := enc[0].Metadata
	want := map[string]string{"encoding": "binary/encrypted", "encryption-key-id": "gridpay-payload-key/0a1b", "encryption-version": "2"}
	if len(md) != len(want)+1 {
		t.Errorf("metadata has %d entries, want exactly %v and the sealed data key", len(md), want)
	}
	// The data key, sealed by the KEK: nonce ‖ 32 bytes ‖ tag.
	if got := len(md[MetadataDEK]); got != hsm.NonceSize+32+hsm.TagSize {
		t.Errorf("sealed data key is %d bytes, want %d", got, hsm.NonceSize+32+hsm.TagSize)
	}
	for k, v := range want {
		if string(md[k]) != v {
			t.Errorf("metadata %s = %q, want %q", k, md[k], v)
		}
	}
	// nonce ‖ ciphertext ‖ tag
	inner, _ := proto.Marshal(toPayloads(t, alice)[0])
	if got := len(enc[0].Data); got != hsm.NonceSize+len(inner)+hsm.TagSize {
		t.Errorf("data is %d bytes, want %d", got, hsm.NonceSize+len(inner)+hsm.TagSize)
	}
	// Two encodings of the same value differ (random nonces).
	again, _ := c.Encode(toPayloads(t, alice))
	if bytes.Equal(again[0].Data, enc[0].Data) {
		t.Error("same ciphertext twice")
	}
}

// Histories recorded before the codec existed hold plain payloads: they are
// passed through untouched, also next to encrypted ones.
func TestPlainPayloadsPassThrough(t *testing.T) {
	soft := newSoftCipher(t)
	c := newCodec(t, Key{ID: "k1", Cipher: soft})
	plain := toPayloads(t, alice, 42, nil)
	plain = append(plain, &commonpb.Payload{Data: []byte("no metadata at all")})
	dec, err := c.Decode(plain)
	if err != nil {
		t.Fatal(err)
	}
	for i := range plain {
		if dec[i] != plain[i] {
			t.Errorf("payload %d was not passed through as is", i)
		}
	}
	if soft.calls.Load() != 0 {
		t.Errorf("the cipher was called %d times for plain payloads", soft.calls.Load())
	}
	enc, _ := c.Encode(toPayloads(t, alice))
	mixed := []*commonpb.Payload{plain[0], enc[0]}
	dec, err = c.Decode(mixed)
	if err != nil || dec[0] != plain[0] || !proto.Equal(dec[1], toPayloads(t, alice)[0]) {
		t.Fatalf("mixed history: %v", err)
	}
}

func TestTampered(t *testing.T) {
	k1 := softKey(t, "k1")
	// The same key material under a second identifier: only the AAD tells
	// the two apart.
	c := newCodec(t, k1, Key{ID: "k1-alias", Cipher: k1.Cipher})
	enc, err := c.Encode(toPayloads(t, alice))
	if err != nil {
		t.Fatal(err)
	}
	orig := enc[0]
	mutate := map[string]func(p *commonpb.Payload){
		"flipped ciphertext bit": func(p *commonpb.Payload) { p.Data[hsm.NonceSize+3] ^= 0x01 },
		"flipped nonce bit":      func(p *commonpb.Payload) { p.Data[0] ^= 0x80 },
		"flipped tag bit":        func(p *commonpb.Payload) { p.Data[len(p.Data)-1] ^= 0x01 },
		"truncated":              func(p *commonpb.Payload) { p.Data = p.Data[:len(p.Data)-5] },
		"too short":              func(p *commonpb.Payload) { p.Data = p.Data[:10] },
		"empty":                  func(p *commonpb.Payload) { p.Data = nil },
		// The AAD binds the key identifier: a payload relabelled as
		// sealed by another configured key fails authentication.
		"key id swapped": func(p *commonpb.Payload) { p.Metadata[MetadataKeyID] = []byte("k1-alias") },
		// The data key is sealed by the KEK: altered or missing, it does
		// not open.
		"flipped data key bit": func(p *commonpb.Payload) { p.Metadata[MetadataDEK][hsm.NonceSize+1] ^= 0x04 },
		"data key dropped":     func(p *commonpb.Payload) { delete(p.Metadata, MetadataDEK) },
		// Sealed as version 1 claims: the AADs differ.
		"version 1 claimed": func(p *commonpb.Payload) { p.Metadata[MetadataVersion] = []byte("1") },
	}
	for name, fn := range mutate {
		t.Run(name, func(t *testing.T) {
			p := proto.Clone(orig).(*commonpb.Payload)
			fn(p)
			_, err := c.Decode([]*commonpb.Payload{p})
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("want ErrTampered, got %v", err)
			}
			if strings.Contains(err.Error(), "C31000002") {
				t.Fatalf("error shows plaintext: %v", err)
			}
		})
	}
	// The version is bound as well; an unknown one is refused as such.
	p := proto.Clone(orig).(*commonpb.Payload)
	p.Metadata[MetadataVersion] = []byte("3")
	if _, err := c.Decode([]*commonpb.Payload{p}); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), `"3"`) {
		t.Fatalf("version 3: %v", err)
	}
}

func TestUnknownKey(t *testing.T) {
	old := newCodec(t, softKey(t, "gridpay-payload-key/aaaa"))
	enc, err := old.Encode(toPayloads(t, alice))
	if err != nil {
		t.Fatal(err)
	}
	c := newCodec(t, softKey(t, "gridpay-payload-key-2/bbbb"))
	_, err = c.Decode(enc)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), `"gridpay-payload-key/aaaa"`) {
		t.Fatalf("want ErrUnknownKey naming the key, got %v", err)
	}
	// Through the SDK's converter the error reaches the caller.
	var got customer
	if err := c.DataConverter().FromPayload(enc[0], &got); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("data converter: %v", err)
	}
}

// Key rotation: the new key encrypts, the old one still decrypts what it
// sealed, and what the new key seals is out of reach of the old codec.
func TestRotation(t *testing.T) {
	k1, k2 := softKey(t, "k1"), softKey(t, "k2")
	before := newCodec(t, k1)
	after := newCodec(t, k2, k1)
	if after.KeyID() != "k2" || strings.Join(after.KeyIDs(), ",") != "k2,k1" {
		t.Fatalf("keys: %s %v", after.KeyID(), after.KeyIDs())
	}
	sealedBefore, _ := before.Encode(toPayloads(t, alice))
	sealedAfter, _ := after.Encode(toPayloads(t, alice))
	if string(sealedAfter[0].Metadata[MetadataKeyID]) != "k2" {
		t.Fatalf("encrypted with %s, want the current key k2", sealedAfter[0].Metadata[MetadataKeyID])
	}
	for name, p := range map[string]*commonpb.Payload{"old key": sealedBefore[0], "new key": sealedAfter[0]} {
		if _, err := after.Decode([]*commonpb.Payload{p}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := before.Decode(sealedAfter); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("the old codec read the new key's payload: %v", err)
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	k := softKey(t, "k1")
	for name, keys := range map[string][]Key{
		"empty id":   {{ID: "", Cipher: k.Cipher}},
		"nul in id":  {{ID: "a\x00b", Cipher: k.Cipher}},
		"no cipher":  {{ID: "k2"}},
		"same twice": {k, k},
	} {
		if _, err := New(keys[0], keys[1:]...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Failure messages often name a customer: they are sealed as encoded
// attributes, and a client with the codec reads them back.
func TestFailuresEncrypted(t *testing.T) {
	c := newCodec(t, softKey(t, "k1"))
	fc := c.FailureConverter()
	f := fc.ErrorToFailure(temporal.NewNonRetryableApplicationError("customer C31000002 is unknown", "UnknownCustomer", nil, alice))
	if strings.Contains(f.GetMessage(), "C31000002") || strings.Contains(f.GetStackTrace(), "C31000002") {
		t.Fatalf("failure message in clear: %q", f.GetMessage())
	}
	if !IsEncrypted(f.GetEncodedAttributes()) {
		t.Fatal("message and stack trace are not in encrypted attributes")
	}
	for _, d := range f.GetApplicationFailureInfo().GetDetails().GetPayloads() {
		if !IsEncrypted(d) {
			t.Fatal("failure details in clear")
		}
	}
	if f.GetApplicationFailureInfo().GetType() != "UnknownCustomer" {
		t.Fatalf("the error type must stay readable for retry policies: %q", f.GetApplicationFailureInfo().GetType())
	}
	err := fc.FailureToError(f)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !strings.Contains(appErr.Error(), "customer C31000002 is unknown") {
		t.Fatalf("decoded failure: %v", err)
	}
	var got customer
	if err := appErr.Details(&got); err != nil || got != alice {
		t.Fatalf("details: %+v %v", got, err)
	}
}

// A strict codec panics with the error a lenient one returns.
func TestStrict(t *testing.T) {
	enc, err := newCodec(t, softKey(t, "gone")).Encode(toPayloads(t, alice))
	if err != nil {
		t.Fatal(err)
	}
	c := newCodec(t, softKey(t, "k1"))
	if _, err := c.Decode(enc); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("lenient: %v", err)
	}
	strict := c.Strict()
	func() {
		defer func() {
			p, ok := recover().(Panic)
			if !ok || !errors.Is(p, ErrUnknownKey) || !strings.Contains(p.Error(), `"gone"`) {
				t.Fatalf("strict: want a Panic with ErrUnknownKey, got %v", p)
			}
		}()
		_, _ = strict.Decode(enc)
		t.Fatal("no panic")
	}()
	// Same keys, same format.
	sealed, err := strict.Encode(toPayloads(t, alice))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Decode(sealed); err != nil {
		t.Fatal(err)
	}
	var none *Codec
	if none.Strict() != nil {
		t.Fatal("a nil codec (disabled) must stay nil")
	}
}

// The HSM is asked once per data key, not per payload: one seal for many
// encodings, one unseal per data key on the decoding side; a new data key
// after DEKLifetime.
func TestDataKeyReuse(t *testing.T) {
	soft := newSoftCipher(t)
	c := newCodec(t, Key{ID: "k1", Cipher: soft})
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	var sealed [][]*commonpb.Payload
	for range 10 {
		enc, err := c.Encode(toPayloads(t, alice, 7, "x"))
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, enc)
	}
	if n := soft.calls.Load(); n != 1 {
		t.Fatalf("30 payloads took %d HSM calls, want 1", n)
	}
	// Another program with the same key: one unseal for all of them.
	reader := newCodec(t, Key{ID: "k1", Cipher: soft})
	before := soft.calls.Load()
	for _, enc := range sealed {
		dec, err := reader.Decode(enc)
		if err != nil || !proto.Equal(dec[0], toPayloads(t, alice)[0]) {
			t.Fatalf("decode: %v", err)
		}
	}
	if n := soft.calls.Load() - before; n != 1 {
		t.Fatalf("decoding took %d HSM calls, want 1", n)
	}
	// Past the lifetime: a new data key.
	now = now.Add(DEKLifetime)
	enc, err := c.Encode(toPayloads(t, alice))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(enc[0].Metadata[MetadataDEK], sealed[0][0].Metadata[MetadataDEK]) || soft.calls.Load() != before+2 {
		t.Fatalf("no new data key after %s (%d calls)", DEKLifetime, soft.calls.Load())
	}
}

// Payloads the first format sealed (each with the KEK itself) still read.
func TestVersion1StillRead(t *testing.T) {
	soft := newSoftCipher(t)
	c := newCodec(t, Key{ID: "k1", Cipher: soft})
	inner := toPayloads(t, alice)[0]
	plain, _ := proto.Marshal(inner)
	data, err := soft.SealContext(context.Background(), plain, aad("1", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	v1 := &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte(EncodingEncrypted),
		MetadataKeyID: []byte("k1"), MetadataVersion: []byte("1")}, Data: data}
	dec, err := c.Decode([]*commonpb.Payload{v1})
	if err != nil || !proto.Equal(dec[0], inner) {
		t.Fatalf("version 1 payload: %v", err)
	}
	v1.Data[hsm.NonceSize] ^= 1
	if _, err := c.Decode([]*commonpb.Payload{v1}); !errors.Is(err, ErrTampered) {
		t.Fatalf("tampered version 1 payload: %v", err)
	}
}
