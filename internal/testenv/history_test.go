//go:build integration

package testenv

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/gridpay/gridpay/codec"
)

// gcm is a software cipher for the codec (the HSM's is tested in codec/).
type gcm struct{ aead cipher.AEAD }

func (g gcm) SealContext(_ context.Context, pt, aad []byte) ([]byte, error) {
	nonce := make([]byte, g.aead.NonceSize())
	rand.Read(nonce)
	return g.aead.Seal(nonce, nonce, pt, aad), nil
}

func (g gcm) OpenContext(_ context.Context, sealed, aad []byte) ([]byte, error) {
	n := g.aead.NonceSize()
	return g.aead.Open(nil, sealed[:n], sealed[n:], aad)
}

// A client from UseCodec encrypts, and the histories it reads are recorded
// decrypted (the replay tests have no HSM key); through a client without
// the codec, recording an encrypted history is refused.
func TestRecordedHistoriesAreDecrypted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	c, err := codec.New(codec.Key{ID: "test", Cipher: gcm{aead}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := StartTemporal(ctx, TemporalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	plain := srv.Client()
	if err := srv.UseCodec(c); err != nil {
		t.Fatal(err)
	}
	coded := srv.Client()
	w := worker.New(coded, "testenv-codec", worker.Options{})
	w.RegisterWorkflow(echoWorkflow)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	run, err := coded.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "testenv-codec"}, echoWorkflow, "C31000002")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil || got != "echo:C31000002" {
		t.Fatalf("%q %v", got, err)
	}

	read := func(c client.Client) *historypb.History {
		var h historypb.History
		it := c.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			h.Events = append(h.Events, ev)
		}
		return &h
	}
	h := read(coded)
	if err := decryptHistory(ctx, coded, h); err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = proxy.VisitPayloads(ctx, h, proxy.VisitPayloadsOptions{SkipSearchAttributes: true,
		Visitor: func(_ *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
			for _, p := range ps {
				n++
				if codec.IsEncrypted(p) || !strings.Contains(string(p.Data), "C31000002") {
					t.Errorf("payload not decrypted: %v", p)
				}
			}
			return ps, nil
		}})
	if n != 2 {
		t.Errorf("%d payloads, want the input and the result", n)
	}
	if err := decryptHistory(ctx, plain, read(plain)); err == nil || !strings.Contains(err.Error(), "UseCodec") {
		t.Fatalf("an encrypted history through a client without the codec: %v", err)
	}
}
