//go:build integration

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/internal/testenv"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
	"github.com/gridpay/gridpay/store"
)

// chromiumPath is where Debian's package chromium, which scripts/deps.sh installs, puts the browser.
const chromiumPath = "/usr/bin/chromium"

// uiProc is a running `client ui`.
type uiProc struct {
	link, base string
	cmd        *exec.Cmd
	done       chan error
}

// startUI runs `client ui --no-open` for key k, with a configuration that
// names no PIN source (the PIN is typed in the browser), and reads the link
// it prints.
func (s *stack) startUI(k *usbKey) *uiProc {
	s.t.Helper()
	cfg := filepath.Join(s.dir, k.label+".ui.yaml")
	s.write(cfg, fmt.Sprintf(`log: {level: info, format: console}
token: {module: %q, label: %q}
gateway_url: "https://127.0.0.1:%d"
ca_file: %q
state_dir: %q
timeout: 10s
`, s.module, k.label, s.gwPort, filepath.Join(s.dir, "pki", "root.pem"), filepath.Join(s.dir, "state-"+k.label)))
	logFile, err := os.Create(filepath.Join(s.dir, "client-ui.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(s.bin, "client"), "--config", cfg, "ui", "--no-open", "--listen", "127.0.0.1:0")
	cmd.Env = s.env
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	p := &uiProc{cmd: cmd, done: make(chan error, 1)}
	links := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`http://127\.0\.0\.1:\d+/launch\?k=[A-Za-z0-9_-]+`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(logFile, sc.Text())
			if l := re.FindString(sc.Text()); l != "" {
				select {
				case links <- l:
				default:
				}
			}
		}
		p.done <- cmd.Wait()
		logFile.Close()
	}()
	s.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	select {
	case p.link = <-links:
	case err := <-p.done:
		s.t.Fatalf("client ui exited before printing its link (%v):\n%s", err, readFile(s.t, logFile.Name()))
	case <-time.After(60 * time.Second):
		s.t.Fatalf("client ui printed no link within 60 s:\n%s", readFile(s.t, logFile.Name()))
	}
	u, err := url.Parse(p.link)
	if err != nil {
		s.t.Fatal(err)
	}
	p.base = "http://" + u.Host
	return p
}

// newChromium starts headless Chromium with a fresh profile.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is needed for the web UI tests and is missing at %s (%v): install the Debian package chromium (scripts/deps.sh does)", chromiumPath, err)
	}
	var out bytes.Buffer
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(&out),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("Chromium's output:\n%s", out.String())
		}
	})
	// The browser lives as long as the context of its first run: start it
	// here, so that the steps' shorter timeouts do not end it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v\n%s", err, out.String())
	}
	return ctx
}

// shots saves screenshots under build/screenshots/ in the repository.
type shots struct {
	t   *testing.T
	ctx context.Context
	dir string
}

func newShots(t *testing.T, ctx context.Context) *shots {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "build", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &shots{t: t, ctx: ctx, dir: dir}
}

func (s *shots) take(name string) {
	s.t.Helper()
	png, err := chromedp.Run(s.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		s.t.Fatalf("screenshot %s is not a PNG", name)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "ui-"+name+".png"), png, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// browse runs browser steps, failing with the step's description.
func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(dctx, chromedp.Location())
		html, _ := chromedp.Run(dctx, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
		t.Fatalf("%s: %v\nat %s\n%s", what, err, loc, html)
	}
}

func pageText(t *testing.T, ctx context.Context, sel chromedp.CSS) string {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(tctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func countElems(t *testing.T, ctx context.Context, css string) int {
	t.Helper()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", css)))
	if err != nil {
		t.Fatalf("counting %s: %v", css, err)
	}
	return n
}

// A customer in arrears uses the window in a real browser against the real
// stack: wrong PIN, login, overview with the arrears alert, consumption,
// bills and the PDF e-bill, history, a bill paid through UnionPay, the
// wallet loaded from the prepaid account through the confirmation step,
// English, logout. The endpoint refuses what does not come from that
// browser.
func TestWebUIInChromium(t *testing.T) {
	ctx := newChromium(t)
	s := newStack(t)
	s.issueLoadSigner()
	s.startSimulator()
	s.startUnionPay()
	s.startWorker()
	s.startGateway()
	customer := s.customer("--overdue", "--type", "large_industry")
	k := s.provision(customer, "key-ui")
	s.fund(customer, money.Yuan(1_000))
	pin := strings.TrimSpace(readFile(t, k.pinFile))
	// A blank meter card from the power company (adminctl token init); the
	// customer binds it to the key in the window.
	cardPIN := s.secret("card.pin", "pin-card-ui")
	s.admin("tokens", "init", "--token-label", "meter-card-ui", "--so-pin-file", s.secret("card.so", "so-pin-card-ui"), "--pin-file", cardPIN)
	cardArgs := []string{"--card-label", "meter-card-ui", "--card-pin-file", cardPIN}

	// What the CLI sees, to compare with the window.
	var me struct {
		Customer platform.Customer `json:"customer"`
		Alerts   []api.Alert       `json:"alerts"`
	}
	k.clientJSON(&me, "login")
	var arrears api.ArrearsSummary
	k.clientJSON(&arrears, "arrears")
	var hist api.PaymentList
	k.clientJSON(&hist, "history")
	if arrears.Total <= 0 || len(arrears.Bills) == 0 {
		t.Fatalf("the customer chosen has no arrears: %+v", arrears)
	}

	ui := s.startUI(k)
	refusedWithoutTheBrowser(t, ui)

	shot := newShots(t, ctx)
	browse(t, ctx, "open the printed link", chromedp.Navigate(ui.link), chromedp.WaitVisible(chromedp.ID("pin")))
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || loc != ui.base+"/login" {
		t.Fatalf("the link led to %s (%v), want %s/login (the secret dropped from the address)", loc, err, ui.base)
	}
	if st := pageText(t, ctx, "#key-state"); !strings.Contains(st, "已检测到 USB 密钥") {
		t.Fatalf("key state %q", st)
	}
	shot.take("01-login")

	// A wrong PIN: the error and the tries left.
	browse(t, ctx, "wrong PIN", chromedp.SendKeys(chromedp.ID("pin"), "000000"), chromedp.Click(chromedp.ID("unlock")),
		chromedp.WaitVisible(chromedp.ID("pin-error")))
	if msg := pageText(t, ctx, "#pin-error"); !strings.Contains(msg, "PIN 错误") || !strings.Contains(msg, "4 次") {
		t.Fatalf("wrong PIN message %q", msg)
	}
	if v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("pin"))); v != "" {
		t.Fatal("the PIN field was filled in again")
	}
	shot.take("02-login-wrong-pin")

	// The right PIN: the overview, arrears alert first.
	browse(t, ctx, "log in", chromedp.SendKeys(chromedp.ID("pin"), pin), chromedp.Click(chromedp.ID("unlock")),
		chromedp.WaitVisible(chromedp.ID("balance-due")))
	if name := pageText(t, ctx, "#customer-name"); name != me.Customer.Name {
		t.Fatalf("overview names %q, want %q", name, me.Customer.Name)
	}
	if n := countElems(t, ctx, "#alerts .alert-warning, #alerts .alert-critical"); n == 0 {
		t.Fatal("no arrears alert on the overview")
	}
	if len(me.Alerts) > 3 && (countElems(t, ctx, "#alerts > .alert") != 3 || countElems(t, ctx, "#more-alerts .alert") != len(me.Alerts)-3) {
		t.Fatalf("%d alerts: the overview does not show 3 and fold the rest", len(me.Alerts))
	}
	if a := pageText(t, ctx, "#arrears"); !strings.Contains(a, arrears.Total.Display()) {
		t.Fatalf("arrears card %q, want %s", a, arrears.Total.Display())
	}
	if al := pageText(t, ctx, "#alerts"); !strings.Contains(al, arrears.Bills[0].ID) || !strings.Contains(al, "已逾期") {
		t.Fatalf("alerts %q do not name overdue bill %s", al, arrears.Bills[0].ID)
	}
	shot.take("03-overview")

	// Consumption: the chart and the table, for a chosen range.
	browse(t, ctx, "consumption", chromedp.Click(chromedp.ID("nav-consumption")), chromedp.WaitVisible(chromedp.ID("chart")))
	browse(t, ctx, "choose a range",
		chromedp.SetValue(chromedp.ID("from"), "2026-01"), chromedp.SetValue(chromedp.ID("to"), "2026-06"),
		chromedp.Click(chromedp.ID("show")),
		// Only the new page's table has a sixth row that is its last.
		chromedp.WaitReady(chromedp.CSS("#use-table tbody tr:last-child:nth-child(6)")))
	if rows := countElems(t, ctx, "#use-table tbody tr"); rows != 6 {
		t.Fatalf("%d months in the table for 2026-01 to 2026-06", rows)
	}
	if segs := countElems(t, ctx, "#chart rect.seg"); segs != 18 {
		t.Fatalf("%d chart segments for 6 months", segs)
	}
	shot.take("04-consumption")

	// Bills, one bill, and its PDF.
	browse(t, ctx, "bills", chromedp.Click(chromedp.ID("nav-bills")), chromedp.WaitVisible(chromedp.ID("bills-table")))
	if n := countElems(t, ctx, "#bills-table tbody tr"); n == 0 {
		t.Fatal("no unpaid bill listed for a customer in arrears")
	}
	shot.take("05-bills")
	browse(t, ctx, "all bills", chromedp.Click(chromedp.ID("bills-all")), chromedp.WaitVisible(chromedp.CSS("#bills-all.active")))
	shot.take("06-bills-all")
	overdue := arrears.Bills[0]
	browse(t, ctx, "one bill", chromedp.Navigate(ui.base+"/bills/"+overdue.ID), chromedp.WaitVisible(chromedp.ID("charges")))
	if due := pageText(t, ctx, "#amount-due"); due != overdue.AmountDue.Display() {
		t.Fatalf("bill %s: amount due %q, want %s", overdue.ID, due, overdue.AmountDue.Display())
	}
	shot.take("07-bill")
	pdf := downloadBillPDF(t, ctx)
	if !bytes.Contains(pdf, []byte("("+overdue.ID+")")) || !bytes.Contains(pdf, []byte(`(\245`+strings.TrimPrefix(overdue.AmountDue.Display(), "¥")+")")) {
		t.Fatalf("the PDF does not show bill %s and %s", overdue.ID, overdue.AmountDue.Display())
	}

	// History, as the CLI sees it.
	browse(t, ctx, "history", chromedp.Click(chromedp.ID("nav-history")), chromedp.WaitVisible(chromedp.ID("history-form")))
	shot.take("08-history")
	if len(hist.Items) > 0 {
		if n := countElems(t, ctx, "#history-table tbody tr"); n != len(hist.Items) {
			t.Fatalf("history shows %d payments, the CLI %d", n, len(hist.Items))
		}
		ref := hist.Items[0].Reference
		browse(t, ctx, "search", chromedp.SendKeys(chromedp.ID("q"), ref), chromedp.Click(chromedp.ID("filter")),
			// The answer's search field carries the search as its attribute.
			chromedp.WaitReady(chromedp.CSS(fmt.Sprintf("#q[value=%q]", ref))))
		if n := countElems(t, ctx, "#history-table tbody tr"); n != 1 || !strings.Contains(pageText(t, ctx, "#history-table"), ref) {
			t.Fatalf("searching %s finds %d payments", ref, n)
		}
		shot.take("08-history-search")
	} else if n := countElems(t, ctx, "#no-payments"); n != 1 {
		t.Fatal("an empty history says nothing")
	}

	// Pay the overdue bill from the window, through UnionPay's pay page in
	// the same browser, and see it posted.
	browse(t, ctx, "pay page", chromedp.Click(chromedp.ID("nav-pay")), chromedp.WaitVisible(chromedp.ID("pay-form")))
	shot.take("09-pay")
	browse(t, ctx, "sign the payment", chromedp.Click(chromedp.ID("pay-"+overdue.ID)), chromedp.Click(chromedp.ID("pay-submit")),
		chromedp.WaitVisible(chromedp.ID("pay-open")))
	attr, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("pay-open"), "href"))
	if err != nil || !attr.Exists {
		t.Fatalf("no pay link: %v", err)
	}
	payLink := attr.Value
	statusURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	shot.take("10-pay-awaiting")
	browse(t, ctx, "UnionPay's pay page", chromedp.Navigate(payLink), chromedp.WaitVisible(chromedp.ID("cardNumber")))
	shot.take("11-unionpay")
	browse(t, ctx, "approve at UnionPay", chromedp.SendKeys(chromedp.ID("cardNumber"), "6216261000000000018"),
		chromedp.Click(chromedp.CSS("button.approve")))
	// UnionPay sends the browser back to the gateway's public return page.
	for deadline := time.Now().Add(30 * time.Second); ; {
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err == nil && strings.Contains(loc, "/pay/return") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the browser did not come back from UnionPay (at %s, %v)", loc, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	browse(t, ctx, "back from UnionPay", chromedp.WaitVisible(chromedp.CSS("h1")))
	pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	browse(t, pctx, "posted", chromedp.Navigate(statusURL), chromedp.WaitVisible(chromedp.CSS(`#pay-state[data-status="posted"]`)))
	shot.take("12-pay-posted")

	loadID := loadWalletInChromium(t, ctx, s, shot, "pin-card-ui")

	// English.
	browse(t, ctx, "English", chromedp.Click(chromedp.ID("lang")), chromedp.WaitReady(chromedp.CSS(`html[lang="en"]`)))
	browse(t, ctx, "overview in English", chromedp.Click(chromedp.ID("nav-overview")), chromedp.WaitVisible(chromedp.ID("balance-due")))
	if h := pageText(t, ctx, "#balance-due h2"); h != "Balance due" {
		t.Fatalf("English overview heading %q", h)
	}
	if w := pageText(t, ctx, "#ov-wallet-balance"); w != "¥180.00" {
		t.Fatalf("the overview's wallet shows %q", w)
	}
	shot.take("18-overview-en")
	browse(t, ctx, "wallet in English", chromedp.Click(chromedp.ID("nav-wallet")), chromedp.WaitVisible(chromedp.ID("wallet-amount")))
	shot.take("19-wallet-en")

	// Log out: the key is locked again.
	browse(t, ctx, "log out", chromedp.Click(chromedp.ID("logout")), chromedp.WaitVisible(chromedp.ID("ended")))
	if e := pageText(t, ctx, "#ended"); !strings.Contains(e, "Logged out") {
		t.Fatalf("after logout: %q", e)
	}
	shot.take("20-logged-out")
	browse(t, ctx, "locked again", chromedp.Navigate(ui.base+"/overview"), chromedp.WaitVisible(chromedp.ID("pin")))

	// The CLI finds on the tokens what the window did, and GridPay and
	// the platform agree on the money: what GridPay credited is in the
	// wallet and on the card.
	if w := k.wallet(); w.Balance != money.Yuan(180) || w.Sequence != 1 || !w.LogOK {
		t.Fatalf("client wallet after the window: %+v", w)
	}
	var c cardOutput
	k.clientJSON(&c, append([]string{"card", "balance"}, cardArgs...)...)
	if l := s.waitLoad(loadID, store.LoadConfirmed, 10*time.Second); l.ConfirmedBy != store.ConfirmedByReceipt {
		t.Fatalf("the window's load %+v", l)
	}
	if credited := s.checkLoadMoney(true)[kTokenSerial(t, s, k)]; credited != money.Yuan(300) || c.CardBalance != money.Yuan(120) ||
		c.WalletBalance+c.CardBalance != credited {
		t.Fatalf("GridPay credited %s; the wallet holds %s and the card %s", credited.Display(), c.WalletBalance.Display(), c.CardBalance.Display())
	}

	// The wrong PIN typed in the window reached the gateway's audit log at
	// the next login, as the CLI's do.
	var reported int
	if err := s.db().QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'client.pin_failure'`).Scan(&reported); err != nil {
		t.Fatal(err)
	}
	if reported != 1 {
		t.Fatalf("%d wrong PINs in the audit log, want 1", reported)
	}
}

// loadWalletInChromium loads 300.00 from the funded prepaid account onto
// the key's wallet through the Wallet page and its confirmation step,
// moves 120.00 on to the meter card with the card's PIN typed in the page,
// and finds the load in the history. It returns the load's ID.
func loadWalletInChromium(t *testing.T, ctx context.Context, s *stack, shot *shots, cardPIN string) string {
	t.Helper()
	browse(t, ctx, "wallet", chromedp.Click(chromedp.ID("nav-wallet")), chromedp.WaitVisible(chromedp.ID("load-form")))
	if b, seq := pageText(t, ctx, "#wallet-amount"), pageText(t, ctx, "#wallet-sequence"); b != "¥0.00" || seq != "0" {
		t.Fatalf("a new key's wallet holds %s at sequence %s", b, seq)
	}
	shot.take("13-wallet")

	// A bad amount is refused with a message, before any confirmation.
	browse(t, ctx, "bad amount", chromedp.SendKeys(chromedp.ID("load-amount"), "12.345"), chromedp.Click(chromedp.ID("load-next")),
		chromedp.WaitVisible(chromedp.ID("load-error")))
	if msg := pageText(t, ctx, "#load-error"); !strings.Contains(msg, "两位小数") {
		t.Fatalf("bad amount message %q", msg)
	}
	browse(t, ctx, "amount", chromedp.SetValue(chromedp.ID("load-amount"), "300.00"), chromedp.Click(chromedp.ID("load-next")),
		chromedp.WaitVisible(chromedp.ID("load-confirm-page")))
	if a := pageText(t, ctx, "#confirm-amount"); a != "¥300.00" {
		t.Fatalf("the confirmation shows %q", a)
	}
	// The countdown runs (load.confirm_timeout, 30 s by default).
	first := pageText(t, ctx, "#countdown")
	browse(t, ctx, "countdown", chromedp.Poll[chromedp.Void](`document.getElementById("countdown").textContent !== `+strconv.Quote(first),
		chromedp.WithPollingTimeout(5*time.Second)))
	shot.take("14-wallet-confirm")

	browse(t, ctx, "confirm the load", chromedp.Click(chromedp.ID("load-confirm")),
		chromedp.WaitVisible(chromedp.CSS(`#load-outcome[data-outcome="confirmed"]`)))
	if b, seq := pageText(t, ctx, "#result-amount"), pageText(t, ctx, "#result-sequence"); b != "¥300.00" || seq != "1" {
		t.Fatalf("after the load: %s at sequence %s", b, seq)
	}
	loadID := pageText(t, ctx, "#outcome-loadid")
	shot.take("15-wallet-loaded")
	// Back to the wallet: the new balance, GridPay's signature verified.
	browse(t, ctx, "wallet after the load", chromedp.Click(chromedp.ID("back-wallet")),
		chromedp.WaitVisible(chromedp.CSS(`#wallet-verify[data-verified="true"]`)))
	if b := pageText(t, ctx, "#wallet-amount"); b != "¥300.00" {
		t.Fatalf("the wallet page shows %s", b)
	}
	if l := s.waitLoad(loadID, store.LoadConfirmed, 10*time.Second); l.Amount != int64(money.Yuan(300)) {
		t.Fatalf("GridPay's record of the load: %+v", l)
	}

	// The blank meter card bound to the key, its PIN typed in the page.
	browse(t, ctx, "bind the meter card", chromedp.SendKeys(chromedp.ID("card-label"), "meter-card-ui"),
		chromedp.SendKeys(chromedp.ID("card-number-field"), "3301-0001-0042"), chromedp.SendKeys(chromedp.ID("card-issue-pin"), cardPIN),
		chromedp.Click(chromedp.ID("card-issue")), chromedp.WaitVisible(chromedp.ID("card-form")))
	shot.take("15b-wallet-card-bound")

	// On to the meter card, with its PIN typed in the page.
	if n := pageText(t, ctx, "#card-number"); n != "****0042" {
		t.Fatalf("the card is shown as %q", n)
	}
	browse(t, ctx, "card transfer", chromedp.SendKeys(chromedp.ID("card-amount"), "120.00"), chromedp.SendKeys(chromedp.ID("card-pin"), cardPIN),
		chromedp.Click(chromedp.ID("card-transfer")), chromedp.WaitVisible(chromedp.ID("card-result")))
	if w, c, sum := pageText(t, ctx, "#card-wallet-balance"), pageText(t, ctx, "#card-balance"), pageText(t, ctx, "#card-total"); w != "¥180.00" ||
		c != "¥120.00" || sum != "¥300.00" {
		t.Fatalf("after the transfer: wallet %s, card %s, together %s", w, c, sum)
	}
	if v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("card-pin"))); v != "" {
		t.Fatal("the card's PIN was written back into the form")
	}
	if html, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.documentElement.outerHTML")); strings.Contains(html, cardPIN) {
		t.Fatal("the card's PIN is in the page")
	}
	shot.take("16-wallet-card")

	// The load in the history, beside the payments.
	browse(t, ctx, "history with the load", chromedp.Click(chromedp.ID("nav-history")), chromedp.WaitVisible(chromedp.ID("loads-table")))
	if rows := pageText(t, ctx, "#loads-table tbody"); !strings.Contains(rows, loadID) || !strings.Contains(rows, "已存入钱包") ||
		!strings.Contains(rows, "¥300.00") {
		t.Fatalf("the history's loads: %q", rows)
	}
	shot.take("17-history-loads")
	return loadID
}

// downloadBillPDF clicks the bill's PDF link and returns the file the browser
// saved.
func downloadBillPDF(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	dir := t.TempDir()
	events := true
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir, EventsEnabled: &events,
	}); err != nil {
		t.Fatalf("allowing downloads: %v", err)
	}
	browse(t, ctx, "download the PDF", chromedp.Click(chromedp.ID("pdf")))
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(dir, "*.pdf"))
		if len(files) == 1 {
			b, err := os.ReadFile(files[0])
			if err == nil && bytes.HasSuffix(b, []byte("%%EOF\n")) {
				if !bytes.HasPrefix(b, []byte("%PDF-1.4\n")) || !strings.HasPrefix(filepath.Base(files[0]), "gridpay-bill-") {
					t.Fatalf("downloaded %s: %q…", files[0], b[:min(len(b), 16)])
				}
				return b
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	t.Fatalf("no PDF downloaded within 30 s (%v)", entries)
	return nil
}

// refusedWithoutTheBrowser checks, with plain HTTP, what the endpoint
// refuses: no launch secret, a wrong one, a foreign Host (DNS rebinding),
// a foreign Origin even with a valid cookie, a POST without the CSRF
// token; and that it sends no CORS header.
func refusedWithoutTheBrowser(t *testing.T, ui *uiProc) {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, target, host, origin string, cookie *http.Cookie, form url.Values) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, target, body)
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for h := range resp.Header {
			if strings.HasPrefix(strings.ToLower(h), "access-control-") {
				t.Fatalf("%s %s: CORS header %s", method, target, h)
			}
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Fatalf("%s %s: no CSP", method, target)
		}
		return resp, string(b)
	}
	for _, target := range []string{ui.base + "/", ui.base + "/overview", ui.base + "/login", ui.base + "/launch", ui.base + "/launch?k=guess"} {
		if resp, _ := send("GET", target, "", "", nil, nil); resp.StatusCode != 403 {
			t.Fatalf("GET %s without the secret: %d", target, resp.StatusCode)
		}
	}
	resp, _ := send("GET", ui.link, "", "", nil, nil)
	if resp.StatusCode != 200 || len(resp.Cookies()) != 1 {
		t.Fatalf("launch: %d %v", resp.StatusCode, resp.Cookies())
	}
	cookie := resp.Cookies()[0]
	resp, page := send("GET", ui.base+"/login", "", ui.base, cookie, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("with the cookie: %d", resp.StatusCode)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if csrf == nil {
		t.Fatal("no CSRF token in the login page")
	}
	port := strings.TrimPrefix(ui.base, "http://127.0.0.1:")
	if resp, _ := send("GET", ui.base+"/login", "rebound.example:"+port, "", cookie, nil); resp.StatusCode != 403 {
		t.Fatalf("foreign Host: %d", resp.StatusCode)
	}
	if resp, _ := send("GET", ui.base+"/login", "", "http://attacker.example", cookie, nil); resp.StatusCode != 403 {
		t.Fatalf("foreign Origin: %d", resp.StatusCode)
	}
	form := url.Values{"csrf": {csrf[1]}, "pin": {"000000"}}
	if resp, _ := send("POST", ui.base+"/login", "", "http://attacker.example", cookie, form); resp.StatusCode != 403 {
		t.Fatalf("POST from a foreign Origin: %d", resp.StatusCode)
	}
	if resp, _ := send("POST", ui.base+"/login", "", ui.base, cookie, url.Values{"pin": {"000000"}}); resp.StatusCode != 403 {
		t.Fatalf("POST without the CSRF token: %d", resp.StatusCode)
	}
	// None of these was a PIN attempt: the browser will see 4 tries left
	// after its one wrong PIN.
}
