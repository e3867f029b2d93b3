//go:build integration

package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gridpay/gridpay/codec"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/protocol"
	"github.com/gridpay/gridpay/workflows"
)

// BenchmarkPaymentThroughput pays 200 prepaid top-ups end to end at
// concurrency 20 (20 customers, each with their USB key on SoftHSM2, the
// UnionPay simulator approving at once) and measures start → posted; then,
// on the same Temporal server, 200 bare workflows with as many no-op
// activities as a payment ran, through the same payload codec. Figures are
// printed, not asserted:
//
//	go test -tags integration -run '^$' -bench PaymentThroughput -benchtime 1x ./e2e/
//
// GRIDPAY_TEMPORAL_CODEC_DISABLED=true runs both without the codec.
func BenchmarkPaymentThroughput(b *testing.B) {
	const payments, concurrency = 200, 20
	s := newStack(b)
	s.startSimulator()
	s.startUnionPay("--auto-approve")
	s.startWorker()
	s.startGateway()

	var ids []string
	r := s.run("platform-sim", "customers", "--dsn", s.simDSN, "--limit", fmt.Sprint(concurrency), "--json")
	if err := json.Unmarshal([]byte(r.out), &ids); err != nil || len(ids) < concurrency {
		b.Fatalf("customers: %v %s", err, r.out)
	}
	// Every key is made (by adminctl) before this process opens any: its
	// SoftHSM2 library lists the tokens it saw when it opened them.
	keys := make([]*usbKey, concurrency)
	for i, id := range ids[:concurrency] {
		keys[i] = s.provision(id, fmt.Sprintf("bench-%02d", i))
	}
	payers := make([]*benchPayer, concurrency)
	for i, k := range keys {
		payers[i] = s.benchPayer(b, k)
	}

	for i := 0; i < b.N; i++ {
		latencies := make([]time.Duration, 0, payments)
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := time.Now()
		for g := range concurrency {
			wg.Go(func() {
				for n := range payments / concurrency {
					d, err := payers[g].pay(fmt.Sprintf("benchmark-%d-%02d-%03d", i, g, n))
					if err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					latencies = append(latencies, d)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		if b.Failed() {
			return
		}
		rate := float64(payments) / elapsed.Seconds()

		activitiesPerPayment := s.activitiesOf(workflows.PaymentID(payers[0].customer, fmt.Sprintf("benchmark-%d-00-000", i)))
		bare := s.bareThroughput(b, payments, concurrency, activitiesPerPayment)
		slices.Sort(latencies)
		p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]
		b.ReportMetric(rate, "payments/s")
		b.ReportMetric(float64(p50.Milliseconds()), "p50-ms")
		b.ReportMetric(float64(p99.Milliseconds()), "p99-ms")
		b.ReportMetric(bare, "bare-workflows/s")
		b.ReportMetric(rate/bare, "ratio")
		b.Logf("%d payments at concurrency %d in %s: %.1f payments/s, start→posted p50 %s p99 %s; bare workflow with %d no-op activities: %.1f/s; ratio %.2f",
			payments, concurrency, elapsed.Round(time.Millisecond), rate, p50, p99, activitiesPerPayment, bare, rate/bare)
	}
	s.checkMoney()
}

// benchPayer is one customer paying in a loop, in-process: its USB key
// signs, a TLS client talks to the gateway, and it plays the browser.
type benchPayer struct {
	s        *stack
	customer string
	token    *hsm.Token
	signer   crypto.Signer
	leaf     *x509.Certificate
	hc       *http.Client
}

func (s *stack) benchPayer(b *testing.B, k *usbKey) *benchPayer {
	kc := s.keyClient(b, k)
	return &benchPayer{s: s, customer: k.customerID, token: kc.token, signer: kc.signer, leaf: kc.leaf, hc: kc.hc}
}

var (
	benchFormAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)
	benchFormInput  = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)
)

// pay tops up the prepaid account by 100.00 and returns start → posted.
func (p *benchPayer) pay(key string) (time.Duration, error) {
	start := time.Now()
	nonce := make([]byte, protocol.MinNonceSize)
	_, _ = rand.Read(nonce)
	enc, err := protocol.EncodePaymentInstruction(protocol.PaymentInstruction{
		Version: protocol.PaymentInstructionVersion, IdempotencyKey: key, CustomerID: p.customer, TokenSerial: p.token.Info().Serial,
		CertSerial: pki.SerialHex(p.leaf.SerialNumber), Kind: protocol.PayPrepay, Amount: money.Yuan(100), Currency: "CNY",
		Nonce: nonce, Timestamp: time.Now().UTC().Truncate(time.Second),
	})
	if err != nil {
		return 0, err
	}
	sig, err := p.signer.Sign(rand.Reader, protocol.PaymentInstructionDigest(enc), crypto.SHA256)
	if err != nil {
		return 0, err
	}
	body, _ := json.Marshal(api.PaymentRequest{Instruction: enc, Signature: sig})
	var order api.PaymentOrder
	if err := p.call(http.MethodPost, api.PathPayments, body, &order); err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	page, err := p.get(order.PayURL)
	if err != nil {
		return 0, err
	}
	m := benchFormAction.FindSubmatch(page)
	if m == nil {
		return 0, fmt.Errorf("%s: the pay link served no form", key)
	}
	form := url.Values{}
	for _, in := range benchFormInput.FindAllSubmatch(page, -1) {
		form.Set(html.UnescapeString(string(in[1])), html.UnescapeString(string(in[2])))
	}
	resp, err := http.PostForm(html.UnescapeString(string(m[1])), form)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for {
		var st api.PaymentStatus
		if err := p.call(http.MethodGet, api.PathPayment+order.Key, nil, &st); err != nil {
			return 0, err
		}
		switch {
		case st.Status == "posted":
			return time.Since(start), nil
		case st.Final:
			return 0, fmt.Errorf("%s ended %s: %s", key, st.Status, st.Reason)
		case time.Since(start) > 2*time.Minute:
			return 0, fmt.Errorf("%s still %s after 2 minutes", key, st.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *benchPayer) call(method, path string, body []byte, out any) error {
	req, err := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", p.s.gwPort, path), bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, data)
	}
	return json.Unmarshal(data, out)
}

func (p *benchPayer) get(link string) ([]byte, error) {
	resp, err := http.Get(link)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// activitiesOf counts the activities a workflow ran.
func (s *stack) activitiesOf(workflowID string) int {
	it := s.temporal.Client().GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	n := 0
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			s.t.Fatal(err)
		}
		if ev.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED {
			n++
		}
	}
	return n
}

// bareWorkflow runs n no-op activities one after the other: the engine's
// own cost for a workflow shaped like a payment.
func bareWorkflow(ctx workflow.Context, n int) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	for range n {
		if err := workflow.ExecuteActivity(ctx, noop).Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

func noop(context.Context) error { return nil }

// bareThroughput runs count bare workflows at concurrency on the stack's
// Temporal server and returns workflows per second. Its client seals
// payloads with the HSM's payload key like GridPay's programs, so the
// comparison charges GridPay for its own work, not for the encryption
// every workflow pays. (Opened here, after every USB key was made:
// SoftHSM2 lists the tokens of its first initialisation only.)
func (s *stack) bareThroughput(b *testing.B, count, concurrency, activities int) float64 {
	tc := s.temporal.Client()
	if os.Getenv("GRIDPAY_TEMPORAL_CODEC_DISABLED") != "true" {
		tok, err := hsm.OpenToken(s.module, s.hsmSel, []byte(s.hsmPIN), hsm.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer tok.Close()
		pc, err := codec.LoadHSM(context.Background(), tok, "gridpay-payload-key", nil)
		if err != nil {
			b.Fatal(err)
		}
		if tc, err = client.NewClientFromExisting(tc, client.Options{DataConverter: pc.DataConverter(), FailureConverter: pc.FailureConverter()}); err != nil {
			b.Fatal(err)
		}
		defer tc.Close()
	}
	w := worker.New(tc, "bare", worker.Options{})
	w.RegisterWorkflow(bareWorkflow)
	w.RegisterActivity(noop)
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	var wg sync.WaitGroup
	for g := range concurrency {
		wg.Go(func() {
			for n := range count / concurrency {
				run, err := tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
					ID: fmt.Sprintf("bare-%d-%d-%d", start.UnixNano(), g, n), TaskQueue: "bare"}, bareWorkflow, activities)
				if err == nil {
					err = run.Get(context.Background(), nil)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(count) / time.Since(start).Seconds()
}
