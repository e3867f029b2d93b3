// Package codec encrypts the payloads GridPay hands to Temporal — workflow,
// activity, signal, update and query arguments and results, failure details —
// with AES-256-GCM keys that never leave the HSM, so that the Temporal
// server, its database and its Web UI hold customer IDs, bills, amounts and
// signed messages as ciphertext only (ARCHITECTURE.md, invariant 4).
//
// # Format (version 2: envelope encryption)
//
// Each payload is serialised whole (commonpb.Payload in protobuf, its
// metadata included, so the encoding of the value is hidden too) and sealed
// into a new payload with AES-256-GCM under a data key (DEK): 32 random
// bytes the Codec draws and seals with the key in the HSM (the key
// encryption key, KEK), then uses in memory for DEKLifetime. The sealed DEK
// travels with every payload:
//
//	metadata  encoding            = "binary/encrypted"
//	          encryption-key-id   = the KEK's identifier (HSM: "<label>/<CKA_ID hex>")
//	          encryption-version  = "2"
//	          encryption-dek      = the DEK sealed by the KEK (nonce ‖ ciphertext ‖ tag)
//	data      nonce (12 bytes) ‖ ciphertext ‖ GCM tag (16 bytes), under the DEK
//
// Why: a payload sealed in the HSM costs two PKCS#11 round trips, and a
// payment moves dozens of payloads through three programs; with a DEK the
// HSM is asked once per DEK (and once per DEK on the decoding side, which
// keeps unsealed DEKs in a bounded cache). The KEK never leaves the HSM;
// a DEK lives in the memory of the program, which holds the payloads'
// plaintext anyway.
//
// The additional authenticated data is "gridpay/temporal-payload", the
// version and the KEK identifier, NUL-separated, for the payload and (with
// "dek" appended) for the sealed DEK: a payload cannot be passed off as
// another version's or another key's without failing authentication.
//
// Version 1, which this package wrote first, sealed each payload directly
// with the KEK (no encryption-dek); it is still read.
//
// Decoding leaves payloads without the "binary/encrypted" encoding alone,
// so histories recorded before the codec existed still replay and read.
//
// # Keys and rotation
//
// A Codec encrypts with one current key and decrypts with it and any number
// of older keys. To rotate, create the new key, make every program accept it
// (old_key_labels), then make it current and list the former key as old; an
// old key is needed for as long as histories sealed with it are kept.
package codec

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"

	"github.com/gridpay/gridpay/hsm"
)

// Payload metadata written by Encode.
const (
	// EncodingEncrypted is the metadata "encoding" of a sealed payload (the
	// SDK has no constant for it; Temporal's samples and Web UI use this).
	EncodingEncrypted = "binary/encrypted"
	// MetadataKeyID names the key that sealed the payload.
	MetadataKeyID = "encryption-key-id"
	// MetadataVersion is the format version.
	MetadataVersion = "encryption-version"
	// MetadataDEK is the sealed data key of a version 2 payload.
	MetadataDEK = "encryption-dek"
	// Version is the format this package writes.
	Version = "2"
	// version1 sealed each payload with the KEK itself; still read.
	version1 = "1"
)

// DEKLifetime is how long a Codec encrypts with one data key before it
// draws the next.
const DEKLifetime = 10 * time.Minute

// maxDEKUses bounds the payloads one data key seals: random 96-bit nonces
// stay far below the 2^32 messages GCM allows per key.
const maxDEKUses = 1 << 24

// maxOpenDEKs bounds the cache of unsealed data keys; when full it starts
// over.
const maxOpenDEKs = 4096

// aadPrefix starts the additional authenticated data of every sealed
// payload (see the package documentation).
const aadPrefix = "gridpay/temporal-payload"

// DefaultTimeout bounds the HSM calls of one Encode or Decode: the
// converter interface carries no context, and a worker waiting forever on
// an exhausted session pool would look like a hang.
const DefaultTimeout = 30 * time.Second

// Errors of Decode, checked with errors.Is. Their messages name the key
// identifier, never anything of the payload.
var (
	// ErrUnknownKey: the payload was sealed with a key this Codec does not
	// hold (add its label to temporal.codec.old_key_labels).
	ErrUnknownKey = errors.New("payload encrypted with a key that is not configured")
	// ErrTampered: the payload failed authentication — altered, truncated,
	// or its metadata swapped.
	ErrTampered = errors.New("encrypted payload failed authentication (tampered or corrupted)")
	// ErrVersion: the payload is of a format this build does not read.
	ErrVersion = errors.New("unsupported payload encryption version")
)

// Cipher is AES-256-GCM under one key: SealContext returns nonce ‖
// ciphertext ‖ tag, and OpenContext reports a failed authentication as
// hsm.ErrDecrypt. *hsm.AEAD implements it; tests use a software fake.
type Cipher interface {
	SealContext(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	OpenContext(ctx context.Context, sealed, aad []byte) ([]byte, error)
}

var _ Cipher = (*hsm.AEAD)(nil)

// Key is a Cipher and the identifier written next to what it seals.
type Key struct {
	// ID identifies the key in payload metadata: unique among the keys a
	// Codec holds, stable for the key's life, without NUL bytes.
	ID     string
	Cipher Cipher
}

// Codec is a converter.PayloadCodec sealing payloads with its current key
// and opening them with any of its keys. It is safe for concurrent use.
type Codec struct {
	current Key
	keys    map[string]Key
	ids     []string // the current key's first
	timeout time.Duration
	strict  bool // panic instead of returning errors (see Strict)
	now     func() time.Time

	// deks is shared by the copies Strict makes.
	deks *dekState
}

// dekState is the data key a Codec encrypts with and the data keys it has
// unsealed.
type dekState struct {
	mu      sync.Mutex
	current *dataKey
	opened  map[[sha256.Size]byte]cipher.AEAD // by SHA-256 of the sealed DEK and the KEK id
}

// dataKey is a DEK in use for encryption.
type dataKey struct {
	aead    cipher.AEAD
	sealed  []byte // by the KEK
	kekID   string
	expires time.Time
	uses    int
}

var _ converter.PayloadCodec = (*Codec)(nil)

// New returns a Codec that encrypts with current and decrypts with current
// and old.
func New(current Key, old ...Key) (*Codec, error) {
	c := &Codec{current: current, keys: map[string]Key{}, timeout: DefaultTimeout, now: time.Now,
		deks: &dekState{opened: map[[sha256.Size]byte]cipher.AEAD{}}}
	for _, k := range append([]Key{current}, old...) {
		switch {
		case k.ID == "" || strings.ContainsRune(k.ID, 0):
			return nil, fmt.Errorf("codec.New: key identifier %q is empty or holds a NUL byte", k.ID)
		case k.Cipher == nil:
			return nil, fmt.Errorf("codec.New: key %q has no cipher", k.ID)
		case c.keys[k.ID].Cipher != nil:
			return nil, fmt.Errorf("codec.New: key %q given twice", k.ID)
		}
		c.keys[k.ID] = k
		c.ids = append(c.ids, k.ID)
	}
	return c, nil
}

// Strict returns a Codec with the same keys that panics with a Panic where
// c returns an error. Workers use it. Inside a workflow task, a codec error
// would reach the workflow as an ordinary error — a failed start, an
// activity result that "failed" although the activity succeeded — and send
// a saga down its compensation path over a missing key or an HSM that is
// momentarily unavailable. A panic instead fails the workflow task, which
// Temporal retries (the SDK's default BlockWorkflow panic policy) until the
// key is configured or the HSM answers again. Activity tasks turn it into a
// retryable activity failure.
func (c *Codec) Strict() *Codec {
	if c == nil {
		return nil
	}
	s := *c
	s.strict = true
	return &s
}

// Panic is what a Strict codec panics with.
type Panic struct{ Err error }

func (p Panic) Error() string { return p.Err.Error() }
func (p Panic) Unwrap() error { return p.Err }

// fail returns err, or panics with it when c is strict.
func (c *Codec) fail(err error) error {
	if c.strict {
		panic(Panic{err})
	}
	return err
}

// KeyID is the identifier of the key that encrypts.
func (c *Codec) KeyID() string { return c.current.ID }

// KeyIDs are the identifiers of every key that decrypts, the current first.
func (c *Codec) KeyIDs() []string { return append([]string(nil), c.ids...) }

// aad binds a sealed payload to the format version and the key.
func aad(version, keyID string) []byte {
	return []byte(aadPrefix + "\x00" + version + "\x00" + keyID)
}

// Encode seals every payload with the current data key, drawing a new one
// (sealed by the current KEK in the HSM) when it is due.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	dk, err := c.dataKey(ctx, len(payloads))
	if err != nil {
		return payloads, c.fail(err)
	}
	ad := aad(Version, c.current.ID)
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, c.fail(fmt.Errorf("codec: serialising payload %d: %w", i, err))
		}
		nonce := make([]byte, dk.aead.NonceSize(), dk.aead.NonceSize()+len(plain)+dk.aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return payloads, c.fail(fmt.Errorf("codec: nonce for payload %d: %w", i, err))
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(EncodingEncrypted),
				MetadataKeyID:              []byte(c.current.ID),
				MetadataVersion:            []byte(Version),
				MetadataDEK:                dk.sealed,
			},
			Data: dk.aead.Seal(nonce, nonce, plain, ad),
		}
	}
	return out, nil
}

// dataKey returns the data key to seal n payloads with.
func (c *Codec) dataKey(ctx context.Context, n int) (*dataKey, error) {
	st := c.deks
	st.mu.Lock()
	defer st.mu.Unlock()
	now := c.now()
	if dk := st.current; dk != nil && dk.kekID == c.current.ID && now.Before(dk.expires) && dk.uses+n <= maxDEKUses {
		dk.uses += n
		return dk, nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("codec: drawing a data key: %w", err)
	}
	defer clear(raw)
	sealed, err := c.current.Cipher.SealContext(ctx, raw, dekAAD(Version, c.current.ID))
	if err != nil {
		return nil, fmt.Errorf("codec: sealing a data key with key %q: %w", c.current.ID, err)
	}
	aead, err := gcm(raw)
	if err != nil {
		return nil, err
	}
	st.current = &dataKey{aead: aead, sealed: sealed, kekID: c.current.ID, expires: now.Add(DEKLifetime), uses: n}
	st.opened[dekCacheKey(c.current.ID, sealed)] = aead
	return st.current, nil
}

// openDEK unseals a payload's data key with the KEK, or finds it unsealed.
func (c *Codec) openDEK(ctx context.Context, k Key, version string, sealed []byte) (cipher.AEAD, error) {
	ck := dekCacheKey(k.ID, sealed)
	st := c.deks
	st.mu.Lock()
	aead, ok := st.opened[ck]
	st.mu.Unlock()
	if ok {
		return aead, nil
	}
	raw, err := k.Cipher.OpenContext(ctx, sealed, dekAAD(version, k.ID))
	if errors.Is(err, hsm.ErrDecrypt) {
		return nil, fmt.Errorf("%w: the data key sealed by key %q: %w", ErrTampered, k.ID, err)
	}
	if err != nil {
		return nil, fmt.Errorf("unsealing a data key with key %q: %w", k.ID, err)
	}
	defer clear(raw)
	if aead, err = gcm(raw); err != nil {
		return nil, err
	}
	st.mu.Lock()
	if len(st.opened) >= maxOpenDEKs {
		st.opened = map[[sha256.Size]byte]cipher.AEAD{}
	}
	st.opened[ck] = aead
	st.mu.Unlock()
	return aead, nil
}

func gcm(raw []byte) (cipher.AEAD, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("%w: a data key of %d bytes", ErrTampered, len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("codec: data key: %w", err)
	}
	return cipher.NewGCM(block)
}

func dekAAD(version, keyID string) []byte { return append(aad(version, keyID), "\x00dek"...) }

func dekCacheKey(keyID string, sealed []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(keyID))
	h.Write([]byte{0})
	h.Write(sealed)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// Decode opens every sealed payload and passes the others through.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if !IsEncrypted(p) {
			out[i] = p
			continue
		}
		plain, err := c.open(ctx, p)
		if err != nil {
			return payloads, c.fail(fmt.Errorf("codec: payload %d: %w", i, err))
		}
		out[i] = plain
	}
	return out, nil
}

func (c *Codec) open(ctx context.Context, p *commonpb.Payload) (*commonpb.Payload, error) {
	version, keyID := string(p.Metadata[MetadataVersion]), string(p.Metadata[MetadataKeyID])
	if version != Version && version != version1 {
		return nil, fmt.Errorf("%w %q (this build reads versions %s and %s)", ErrVersion, version, version1, Version)
	}
	k, ok := c.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: key %q (configured: %s)", ErrUnknownKey, keyID, strings.Join(c.ids, ", "))
	}
	var plain []byte
	var err error
	if version == version1 {
		plain, err = k.Cipher.OpenContext(ctx, p.Data, aad(version, keyID))
		if errors.Is(err, hsm.ErrDecrypt) {
			return nil, fmt.Errorf("%w: key %q: %w", ErrTampered, keyID, err)
		}
		if err != nil {
			return nil, fmt.Errorf("decrypting with key %q: %w", keyID, err)
		}
	} else {
		dek, err := c.openDEK(ctx, k, version, p.Metadata[MetadataDEK])
		if err != nil {
			return nil, err
		}
		n := dek.NonceSize()
		if len(p.Data) < n+dek.Overhead() {
			return nil, fmt.Errorf("%w: key %q: %d bytes hold no nonce and tag", ErrTampered, keyID, len(p.Data))
		}
		if plain, err = dek.Open(nil, p.Data[:n], p.Data[n:], aad(version, keyID)); err != nil {
			return nil, fmt.Errorf("%w: key %q: the payload does not authenticate under its data key", ErrTampered, keyID)
		}
	}
	var inner commonpb.Payload
	if err := proto.Unmarshal(plain, &inner); err != nil {
		// Authenticated, so written by a codec that serialised something
		// else: a bug, not an attack.
		return nil, fmt.Errorf("decrypted payload (key %q) is not a serialised payload: %w", keyID, err)
	}
	return &inner, nil
}

// IsEncrypted reports whether p is a payload sealed by a Codec.
func IsEncrypted(p *commonpb.Payload) bool {
	return string(p.GetMetadata()[converter.MetadataEncoding]) == EncodingEncrypted
}

// DataConverter is the SDK's default data converter with c sealing what it
// produces. Every Temporal client and worker of GridPay uses it.
func (c *Codec) DataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// FailureConverter seals failures too: their details with the data
// converter (the SDK's default failure converter would write them in
// clear), and their messages and stack traces, which often name a customer
// or a bill, as encoded attributes. Clients with the codec see the
// original messages; error types stay in clear for retry policies.
func (c *Codec) FailureConverter() converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter:          c.DataConverter(),
		EncodeCommonAttributes: true,
	})
}
