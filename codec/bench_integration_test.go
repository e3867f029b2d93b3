//go:build integration

package codec

import (
	"context"
	"crypto/rand"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// benchValue is shaped like a payment workflow's input: identities, bills,
// an amount and a signed instruction (about 1 KiB of JSON).
type benchValue struct {
	CustomerID, TokenSerial, CertSerial string
	BillIDs                             []string
	AmountFen                           int64
	Instruction, Signature              []byte
}

func newBenchValue() benchValue {
	v := benchValue{CustomerID: "C31000002", TokenSerial: "1079af88dcf63fa1", CertSerial: "5f1c9a0e77d34b21a8c4",
		BillIDs: []string{"B20260931000002", "B20261031000002"}, AmountFen: 1234567,
		Instruction: make([]byte, 512), Signature: make([]byte, 72)}
	rand.Read(v.Instruction)
	rand.Read(v.Signature)
	return v
}

// BenchmarkCodec is the cost of one payload through a data converter, to
// payload and back (encode + decode): the SDK's default converter, the
// codec with a software AES-GCM (the codec's own overhead), and the codec
// on SoftHSM2 (one C_Encrypt and one C_Decrypt per payload), serially and
// with concurrent callers sharing the token's session pool. Figures, not
// assertions.
//
//	go test -tags integration -run '^$' -bench Codec ./codec/
func BenchmarkCodec(b *testing.B) {
	ctx := context.Background()
	tok := openTestToken(b, "codec-bench")
	if _, _, err := EnsureHSMKey(ctx, tok, "gridpay-payload-key"); err != nil {
		b.Fatal(err)
	}
	onHSM, err := LoadHSM(ctx, tok, "gridpay-payload-key", nil)
	if err != nil {
		b.Fatal(err)
	}
	soft := newCodec(b, softKey(b, "soft"))
	v := newBenchValue()

	roundTrip := func(b *testing.B, dc converter.DataConverter) int {
		var out benchValue
		p, err := dc.ToPayload(v)
		if err != nil {
			b.Fatal(err)
		}
		if err := dc.FromPayload(p, &out); err != nil {
			b.Fatal(err)
		}
		return proto.Size(p)
	}
	run := func(name string, dc converter.DataConverter) {
		b.Run(name, func(b *testing.B) {
			size := 0
			for b.Loop() {
				size = roundTrip(b, dc)
			}
			// What Temporal stores for the payload, metadata included.
			b.ReportMetric(float64(size), "stored-bytes")
		})
		b.Run(name+"-parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					roundTrip(b, dc)
				}
			})
		})
	}
	run("default", converter.GetDefaultDataConverter())
	run("codec-software-aes", soft.DataConverter())
	run("codec-softhsm2", onHSM.DataConverter())

	// A workflow task often carries several payloads: one Encode call
	// for ten of them.
	b.Run("codec-softhsm2-batch10", func(b *testing.B) {
		ps := make([]*commonpb.Payload, 10)
		for i := range ps {
			ps[i], _ = converter.GetDefaultDataConverter().ToPayload(v)
		}
		for b.Loop() {
			enc, err := onHSM.Encode(ps)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := onHSM.Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ps)), "ns/payload")
	})
}
