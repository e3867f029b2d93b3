//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/proxy"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/gridpay/gridpay/codec"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// programs are built once per test binary.
var programs = map[string]string{
	"adminctl":     "./adminctl",
	"worker":       "./worker",
	"gateway":      "./gateway",
	"client":       "./client",
	"platform-sim": "./sim/platform/cmd/platform-sim",
	"unionpay-sim": "./sim/unionpay/cmd/unionpay-sim",
}

func build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		binDir, buildErr = os.MkdirTemp("", "gridpay-e2e-bin-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + "/"}
		for _, pkg := range programs {
			args = append(args, pkg)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// stack is a whole GridPay installation for one test.
type stack struct {
	t        testing.TB
	bin, dir string
	env      []string // SOFTHSM2_CONF for every program
	config   string   // the server programs' config file
	simDSN   string
	simPort  int
	gwPort   int
	procs    map[string]*proc
	temporal *testenv.Temporal
	hsmPIN   string
	hsmSel   hsm.Selector // the GridPay HSM token
	module   string
	// UnionPay simulator and the gateway's public listener.
	upDSN                       string
	upPort, upAdmin, publicPort int
}

// proc is a running program whose output goes to a log file.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// newStack sets up PostgreSQL, the HSM token with the CA, the service
// certificates and the platform simulator's data, but starts no server.
func newStack(t testing.TB) *stack {
	t.Helper()
	s := &stack{t: t, bin: build(t), dir: t.TempDir(), procs: map[string]*proc{}}
	var err error
	soft := testenv.SoftHSMForTest(t)
	s.env = append(os.Environ(), soft.Env()...)
	hsmToken := soft.NewTestToken(t, fmt.Sprintf("e2e-hsm-%d", time.Now().UnixNano()%1e9))
	pinFile := s.secret("hsm.pin", hsmToken.UserPIN)
	s.hsmPIN, s.module, s.hsmSel = hsmToken.UserPIN, soft.ModulePath(), hsmToken.Selector()
	s.temporal, err = testenv.StartTemporal(context.Background(), testenv.TemporalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.temporal.Stop() })
	if s.simPort, err = testenv.FreePort(); err != nil {
		t.Fatal(err)
	}
	if s.gwPort, err = testenv.FreePort(); err != nil {
		t.Fatal(err)
	}
	s.simDSN = testenv.NewDatabase(t)
	s.upDSN = testenv.NewDatabase(t)
	for _, p := range []*int{&s.upPort, &s.upAdmin, &s.publicPort} {
		if *p, err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	payLinkKey := s.secret("pay-link.key", "e2e-pay-link-secret-0123456789abcdef0123456789")
	s.config = filepath.Join(s.dir, "gridpay.yaml")
	base := fmt.Sprintf(`log: {level: info, format: json}
database: {dsn: %q}
hsm: {module: %q, token_label: %q, pin: {file: %q}}
pki: {dir: %q}
platform: {url: "https://127.0.0.1:%d", ca_file: %q}
listen: "127.0.0.1:%d"
crl_refresh: 1s
temporal: {address: %q, namespace: default, task_queue: e2e}
shutdown_timeout: 5s
`, testenv.NewDatabase(t), soft.ModulePath(), hsmToken.Label, pinFile, filepath.Join(s.dir, "pki"),
		s.simPort, filepath.Join(s.dir, "sim", "ca.pem"), s.gwPort, s.temporal.Address())
	up := fmt.Sprintf("http://127.0.0.1:%d/gateway/api/", s.upPort)
	pub := fmt.Sprintf("http://127.0.0.1:%d", s.publicPort)
	payments := fmt.Sprintf(`unionpay:
  merchant_id: "898310048160001"
  front_url: %q
  back_url: %q
  query_url: %q
  file_url: %q
  merchant_key_file: %q
  merchant_cert_file: %q
  root_file: %q
  notify_url: %q
  return_url: %q
  pay_timeout: 2m
public_listen: %q
public_url: %q
pay_link_secret: {file: %q}
payment: {query_first: 2s, query_max: 4s, grace: 5s, refund_query_max: 3s, post_retry_max: 2s}
`, up+"frontTransReq.do", up+"backTransReq.do", up+"queryTrans.do", up+"fileTransReq.do",
		filepath.Join(s.dir, "merchant", "merchant-key.pem"), filepath.Join(s.dir, "merchant", "merchant.pem"),
		filepath.Join(s.dir, "up", "root.pem"), pub+"/unionpay/notify", pub+"/pay/return",
		strings.TrimPrefix(pub, "http://"), pub, payLinkKey)
	s.write(s.config, base+payments)

	s.admin("db", "migrate")
	s.admin("ca", "init")
	s.useCodec(hsmToken)
	s.admin("ca", "issue", "--server", "--name", "gateway", "--dns", "localhost", "--ip", "127.0.0.1", "--key-label", "gridpay-gateway-tls")
	s.admin("ca", "issue", "--name", "gateway", "--key-label", "gridpay-gateway-platform")
	s.admin("ca", "issue", "--name", "worker", "--key-label", "gridpay-worker-platform")
	s.run("platform-sim", "seed", "--dsn", s.simDSN, "--customers", "40", "--months", "14", "--seed", "7")
	s.run("unionpay-sim", "merchant-cert", "--state-dir", filepath.Join(s.dir, "up"), "--out-dir", filepath.Join(s.dir, "merchant"),
		"--mer-id", "898310048160001", "--log-level", "warn")
	return s
}

// useCodec gives the tests' Temporal client (s.temporal.Client) the payload
// codec with the key adminctl ca init made, as the programs use it. At the
// end of a test, every payload Temporal holds must be encrypted.
// Benchmarks keep a plain client: their bare-workflow baseline is
// Temporal's own cost, and they run too many workflows to check.
func (s *stack) useCodec(tt testenv.TestToken) {
	s.t.Helper()
	t, ok := s.t.(*testing.T)
	if !ok {
		return
	}
	key := hsmPerCall{module: s.module, sel: tt.Selector(), pin: tt.UserPIN, label: "gridpay-payload-key"}
	id, err := key.id()
	if err != nil {
		t.Fatalf("the payload key adminctl ca init should have made: %v", err)
	}
	pc, err := codec.New(codec.Key{ID: id, Cipher: key})
	if err != nil {
		t.Fatal(err)
	}
	plain := s.temporal.Client()
	if err := s.temporal.UseCodec(pc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { checkPayloadsEncrypted(t, plain) })
}

// hsmPerCall is the payload key with the HSM opened for each operation.
// SoftHSM2 sees only the tokens that existed when a process initialised
// it, and the tests make USB keys in child processes and then open them in
// this one: the module must not stay initialised here.
type hsmPerCall struct {
	module     string
	sel        hsm.Selector
	pin, label string
}

func (h hsmPerCall) with(ctx context.Context, fn func(*hsm.AEAD) ([]byte, error)) ([]byte, error) {
	tok, err := hsm.OpenToken(h.module, h.sel, []byte(h.pin), hsm.Options{PoolSize: 1})
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	a, err := tok.AEAD(ctx, hsm.KeyRef{Label: h.label})
	if err != nil {
		return nil, err
	}
	return fn(a)
}

func (h hsmPerCall) id() (string, error) {
	var id string
	_, err := h.with(context.Background(), func(a *hsm.AEAD) ([]byte, error) {
		id = codec.HSMKeyID(a.Ref())
		return nil, nil
	})
	return id, err
}

func (h hsmPerCall) SealContext(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	return h.with(ctx, func(a *hsm.AEAD) ([]byte, error) { return a.SealContext(ctx, plaintext, aad) })
}

func (h hsmPerCall) OpenContext(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	return h.with(ctx, func(a *hsm.AEAD) ([]byte, error) { return a.OpenContext(ctx, sealed, aad) })
}

// checkPayloadsEncrypted reads the raw history of every workflow run in the
// namespace, as the Temporal server stores it, and fails t for any payload
// in clear (search attributes aside: they are indexed by design).
func checkPayloadsEncrypted(t *testing.T, plain client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var next []byte
	inClear, runs, payloads := 0, 0, 0
	for {
		page, err := plain.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", PageSize: 100, NextPageToken: next})
		if err != nil {
			t.Errorf("listing workflows to check their payloads: %v", err)
			return
		}
		for _, ex := range page.Executions {
			runs++
			wf := ex.GetExecution()
			var h historypb.History
			it := plain.GetWorkflowHistory(ctx, wf.GetWorkflowId(), wf.GetRunId(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() {
				ev, err := it.Next()
				if err != nil {
					t.Errorf("history of %s: %v", wf.GetWorkflowId(), err)
					break
				}
				h.Events = append(h.Events, ev)
			}
			_ = proxy.VisitPayloads(ctx, &h, proxy.VisitPayloadsOptions{
				SkipSearchAttributes: true,
				Visitor: func(vc *proxy.VisitPayloadsContext, ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
					for _, p := range ps {
						payloads++
						if codec.IsEncrypted(p) {
							continue
						}
						if inClear++; inClear <= 10 {
							t.Errorf("workflow %s: a payload in %T is in clear (encoding %q)", wf.GetWorkflowId(), vc.Parent, p.GetMetadata()["encoding"])
						}
					}
					return ps, nil
				},
			})
		}
		if next = page.GetNextPageToken(); len(next) == 0 {
			t.Logf("Temporal holds %d payloads in %d workflow runs: %d in clear", payloads, runs, inClear)
			return
		}
	}
}

// startUnionPay starts the UnionPay simulator (100 times faster than real
// time) with extra flags: the faults of a scenario. Its state survives a
// restart with other flags.
func (s *stack) startUnionPay(faults ...string) {
	s.stop("unionpay-sim")
	args := append([]string{"serve", "--dsn", s.upDSN, "--state-dir", filepath.Join(s.dir, "up"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", s.upPort), "--admin-listen", fmt.Sprintf("127.0.0.1:%d", s.upAdmin),
		"--time-scale", "0.01", "--process-delay", "1s"}, faults...)
	s.start("unionpay-sim", listening(s.upPort), args...)
}

func (s *stack) write(path, body string) {
	s.t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// secret writes a 0600 file and returns its path.
func (s *stack) secret(name, value string) string {
	p := filepath.Join(s.dir, name)
	s.write(p, value)
	return p
}

// result is a finished command.
type result struct {
	out, err string
	code     int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
}

// exec runs a program to completion with extra environment.
func (s *stack) exec(env []string, name string, args ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Env = append(append([]string{}, s.env...), env...)
	cmd.Stdin = nil
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{out: out.String(), err: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		s.t.Fatalf("%s %v: %v", name, args, err)
	}
	return r
}

// run runs a program that must succeed.
func (s *stack) run(name string, args ...string) result {
	s.t.Helper()
	r := s.exec(nil, name, args...)
	if r.code != 0 {
		s.t.Fatalf("%s %s: %s", name, strings.Join(args, " "), r)
	}
	return r
}

// admin runs adminctl with the stack's configuration.
func (s *stack) admin(args ...string) result {
	s.t.Helper()
	return s.run("adminctl", append([]string{"--config", s.config}, args...)...)
}

// start launches a long-running program and waits until ready() is true.
func (s *stack) start(name string, ready func() bool, args ...string) {
	s.t.Helper()
	logFile := filepath.Join(s.dir, name+".log")
	if _, err := os.Stat(logFile); err == nil {
		// A restart: keep the earlier run's log beside.
		_ = os.Rename(logFile, filepath.Join(s.dir, fmt.Sprintf("%s.%d.log", name, time.Now().UnixNano())))
	}
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Env = append(append([]string{}, s.env...), "GRIDPAY_CONFIG="+s.config)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logFile, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	s.procs[name] = p
	s.t.Cleanup(func() { s.stop(name) })
	deadline := time.Now().Add(60 * time.Second)
	for !ready() {
		select {
		case err := <-p.done:
			p.done <- err
			s.t.Fatalf("%s exited while starting (%v):\n%s", name, err, s.logOf(name))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s not ready after 60s:\n%s", name, s.logOf(name))
		}
	}
}

// stop ends a program with SIGTERM (SIGKILL after 20 s).
func (s *stack) stop(name string) {
	p, ok := s.procs[name]
	if !ok {
		return
	}
	delete(s.procs, name)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends a program abruptly (SIGKILL), as a crash would.
func (s *stack) kill(name string) {
	p, ok := s.procs[name]
	if !ok {
		return
	}
	delete(s.procs, name)
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (s *stack) logOf(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, name+".log"))
	return string(b)
}

func listening(port int) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

func (s *stack) startSimulator() {
	s.start("platform-sim", listening(s.simPort), "serve", "--dsn", s.simDSN, "--state-dir", filepath.Join(s.dir, "sim"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", s.simPort), "--client-ca", filepath.Join(s.dir, "pki", "services-ca.pem"))
}

func (s *stack) startGateway() { s.start("gateway", listening(s.gwPort)) }

// startWorker starts the worker and waits until it polls its task queue.
func (s *stack) startWorker() {
	s.start("worker", func() bool { return strings.Contains(s.logOf("worker"), "worker running") })
}

// customer finds a seeded customer matching platform-sim customers flags.
func (s *stack) customer(flags ...string) string {
	s.t.Helper()
	r := s.run("platform-sim", append([]string{"customers", "--dsn", s.simDSN, "--limit", "1", "--json"}, flags...)...)
	var ids []string
	if err := json.Unmarshal([]byte(r.out), &ids); err != nil || len(ids) == 0 {
		s.t.Fatalf("no customer for %v: %v\n%s", flags, err, r.out)
	}
	return ids[0]
}

// usbKey is a customer's USB key and the client configured for it.
type usbKey struct {
	s          *stack
	label      string
	customerID string
	config     string
	pinFile    string
}

// provision makes a new SoftHSM2 token the USB key of customerID (directly,
// as adminctl dev provision-key does) and writes its client configuration.
func (s *stack) provision(customerID, label string) *usbKey {
	s.t.Helper()
	k := &usbKey{s: s, label: label, customerID: customerID,
		pinFile: s.secret(label+".pin", "pin-"+label), config: filepath.Join(s.dir, label+".client.yaml")}
	so := s.secret(label+".so-pin", "so-pin-"+label)
	s.admin("dev", "provision-key", "--customer", customerID, "--token-label", label, "--so-pin-file", so, "--pin-file", k.pinFile)
	k.writeConfig(k.pinFile)
	return k
}

func (k *usbKey) writeConfig(pinFile string) {
	module := ""
	for _, line := range strings.Split(readFile(k.s.t, k.s.config), "\n") {
		if strings.HasPrefix(line, "hsm:") {
			module = strings.Split(strings.Split(line, "module: \"")[1], "\"")[0]
		}
	}
	k.s.write(k.config, fmt.Sprintf(`log: {level: warn, format: console}
token: {module: %q, label: %q, pin: {file: %q}}
gateway_url: "https://127.0.0.1:%d"
ca_file: %q
state_dir: %q
timeout: 10s
`, module, k.label, pinFile, k.s.gwPort, filepath.Join(k.s.dir, "pki", "root.pem"), filepath.Join(k.s.dir, "state-"+k.label)))
}

// client runs the desktop client with this key.
func (k *usbKey) client(args ...string) result {
	k.s.t.Helper()
	return k.s.exec(nil, "client", append([]string{"--config", k.config}, args...)...)
}

// clientJSON runs a client command with --json and decodes its output.
func (k *usbKey) clientJSON(v any, args ...string) {
	k.s.t.Helper()
	r := k.client(append(args, "--json")...)
	if r.code != 0 {
		k.s.t.Fatalf("client %v: %s", args, r)
	}
	if err := json.Unmarshal([]byte(r.out), v); err != nil {
		k.s.t.Fatalf("client %v: output is not JSON: %v\n%s", args, err, r.out)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
