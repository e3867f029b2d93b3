// Package codec encrypts the payloads GridPay hands to Temporal — workflow,
// activity, signal, update and query arguments and results, failure details —
// with AES-256-GCM keys that never leave the HSM, so that the Temporal
// server, its database and its Web UI hold customer IDs, bills, amounts and
// signed messages as ciphertext only (ARCHITECTURE.md, invariant 4).
//
// # Format (version 1)
//
// Each payload is serialised whole (commonpb.Payload in protobuf, its
// metadata included, so the encoding of the value is hidden too) and sealed
// into a new payload:
//
//	metadata  encoding            = "binary/encrypted"
//	          encryption-key-id   = the key's identifier (HSM: "<label>/<CKA_ID hex>")
//	          encryption-version  = "1"
//	data      nonce (12 bytes) ‖ ciphertext ‖ GCM tag (16 bytes)
//
// The additional authenticated data is "gridpay/temporal-payload", the
// version and the key identifier, NUL-separated: a payload cannot be passed
// off as another version's or another key's without failing authentication.
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
	"errors"
	"fmt"
	"strings"
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
	// Version is the format this package writes.
	Version = "1"
)

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
}

var _ converter.PayloadCodec = (*Codec)(nil)

// New returns a Codec that encrypts with current and decrypts with current
// and old.
func New(current Key, old ...Key) (*Codec, error) {
	c := &Codec{current: current, keys: map[string]Key{}, timeout: DefaultTimeout}
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

// Encode seals every payload with the current key.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ad := aad(Version, c.current.ID)
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, c.fail(fmt.Errorf("codec: serialising payload %d: %w", i, err))
		}
		sealed, err := c.current.Cipher.SealContext(ctx, plain, ad)
		if err != nil {
			return payloads, c.fail(fmt.Errorf("codec: encrypting payload %d with key %q: %w", i, c.current.ID, err))
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(EncodingEncrypted),
				MetadataKeyID:              []byte(c.current.ID),
				MetadataVersion:            []byte(Version),
			},
			Data: sealed,
		}
	}
	return out, nil
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
	if version != Version {
		return nil, fmt.Errorf("%w %q (this build reads version %s)", ErrVersion, version, Version)
	}
	k, ok := c.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: key %q (configured: %s)", ErrUnknownKey, keyID, strings.Join(c.ids, ", "))
	}
	plain, err := k.Cipher.OpenContext(ctx, p.Data, aad(version, keyID))
	if errors.Is(err, hsm.ErrDecrypt) {
		return nil, fmt.Errorf("%w: key %q: %w", ErrTampered, keyID, err)
	}
	if err != nil {
		return nil, fmt.Errorf("decrypting with key %q: %w", keyID, err)
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
