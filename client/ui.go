package main

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/internal/cli"
)

// The client's window ("client ui") is a web UI served by this process on
// a loopback address, so that the USB key and its PIN stay in the process
// that the CLI commands use, and the pages reach the gateway through the
// same code (unlock, verification, TLS with the token's key, api calls):
//
//	ui.go          the command: listener, printed link, browser, shutdown
//	ui_server.go   the local endpoint's defences, forms, templates
//	ui_keys.go     the unlocked key: login with the page's PIN, idle lock,
//	               removal, the key's state for the login page
//	ui_pages.go    the pages and their error display
//	ui_pay.go      the Pay page (client pay's code path)
//	ui_wallet.go   the Wallet page: loads with the confirmation page, the
//	               meter card (client wallet, load, card's code paths)
//	ui_chart.go    the consumption chart (server-rendered SVG)
//	ui_pdf.go      the e-bill (a PDF written here)
//	ui_i18n.go     zh-CN and English texts, formatting
//	web/           templates, CSS and the login page's polling script,
//	               embedded; nothing is loaded from elsewhere
//
// A new page: its route in uiServer.routes, its template in pageFiles, and
// every action a POST with the form's CSRF token that runs the same code as
// the CLI command it mirrors.

// uiWatchInterval is how often the unlocked key is checked for idleness
// and presence (and how often the login page polls).
const uiWatchInterval = 2 * time.Second

type uiOptions struct {
	Listen string
	Open   bool
	Idle   time.Duration
}

func (a *app) uiCommand() *cobra.Command {
	o := uiOptions{}
	var noOpen bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Open the client's window: a web UI on 127.0.0.1, in your browser",
		Long: `ui serves the client's window (login with the USB key's PIN, overview with
arrears alerts, consumption chart, bills with their PDF e-bill, payments
through UnionPay, the wallet on the USB key with loads and the meter card,
the history of payments and loads; Chinese or English) to your browser from
this program, on a loopback address of this computer only. The PIN is typed
on the page, sent to this program alone, and unlocks the USB key here: the
key and the PIN never leave this computer, and the pages talk to the gateway
exactly as the commands do. A load is confirmed on the page within
load.confirm_timeout, as "client load" asks on the terminal; the meter card's
PIN is typed on the page and goes to the card only.

The address is printed with a secret link and opened in the default browser
($BROWSER, else xdg-open) unless --no-open. Only a browser that opened the
secret link gets in. The key is locked again after --idle-timeout without
use, when it is pulled out, on "log out", and when this program stops
(Ctrl-C).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Open = !noOpen
			return a.runUI(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:0", "address to serve the window on: a 127.x.x.x address; port 0 picks a free one")
	f.BoolVar(&noOpen, "no-open", false, "print the link but do not open a browser")
	f.DurationVar(&o.Idle, "idle-timeout", 15*time.Minute, "lock the USB key again after this long without use")
	return cmd
}

// uiListenAddr checks that addr is an IPv4 loopback address.
func uiListenAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", cli.WithCode(cli.ExitUsage, fmt.Errorf("--listen %q: %w", addr, err))
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return "", cli.WithCode(cli.ExitUsage, fmt.Errorf("--listen %q: the window is served on a loopback address (127.x.x.x) only", addr))
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// runUI serves the window until ctx ends.
func (a *app) runUI(ctx context.Context, out io.Writer, o uiOptions) error {
	addr, err := uiListenAddr(o.Listen)
	if err != nil {
		return err
	}
	if o.Idle <= 0 {
		return cli.WithCode(cli.ExitUsage, fmt.Errorf("--idle-timeout must be positive"))
	}
	// A wrong ca_file is told now, not after the PIN was typed.
	if _, err := loadRoots(a.cfg.CAFile); err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return fail(cli.ExitUnavailable, err, "cannot serve the window on %s: %v", addr, err)
	}
	keys := newUIKeys(a, o.Idle)
	defer keys.close()
	srv, err := newUIServer(a, ln.Addr().(*net.TCPAddr), keys)
	if err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A page waits for up to three gateway calls.
		WriteTimeout:   3*a.cfg.Timeout + 30*time.Second,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 32 << 10,
		ErrorLog:       zap.NewStdLog(a.log.Named("ui-http")),
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	link := srv.launchURL()
	fmt.Fprintf(out, "GridPay client window: %s\n", link)
	fmt.Fprintln(out, "Keep this link to yourself: it lets a browser in. Ctrl-C stops the window and locks the USB key.")
	a.log.Info("web UI listening", zap.String("address", ln.Addr().String()))
	if o.Open {
		cleanup, err := a.openBrowser(link)
		if err != nil {
			a.warn("cannot open a browser (%v): open the link above yourself", err)
		}
		srv.onLaunch = cleanup
		defer cleanup()
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go keys.watch(watchCtx, uiWatchInterval)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		return fail(cli.ExitUnavailable, err, "the window's server stopped: %v", err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn("stopping the window's server", zap.Error(err))
	}
	fmt.Fprintln(out, "Window closed; the USB key is locked.")
	return nil
}

// openBrowser opens link in the default browser through a launch file: a
// page in the state directory (mode 0600) that forwards to link. The
// browser's command line, which every local user can read in the process
// list, then names a file only other users cannot open, not the secret.
// The returned cleanup removes the file.
func (a *app) openBrowser(link string) (cleanup func(), err error) {
	cleanup = func() {}
	f, err := os.CreateTemp(a.local.Dir(), "ui-launch-*.html")
	if err != nil {
		return cleanup, fmt.Errorf("writing the launch file: %w", err)
	}
	path := f.Name()
	cleanup = func() { _ = os.Remove(path) }
	esc := template.HTMLEscapeString(link)
	_, err = fmt.Fprintf(f, "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=%s\"><title>GridPay</title></head><body><a href=\"%s\">GridPay</a></body></html>\n", esc, esc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return cleanup, fmt.Errorf("writing the launch file: %w", err)
	}
	cmd := browserCommand("file://" + path)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return cleanup, err
	}
	go func() { _ = cmd.Wait() }()
	return cleanup, nil
}

// browserCommand is the first command of $BROWSER (a colon-separated
// list; "%s" stands for the address) or the system's opener.
func browserCommand(target string) *exec.Cmd {
	if b := strings.TrimSpace(strings.Split(os.Getenv("BROWSER"), ":")[0]); b != "" {
		args := strings.Fields(b)
		replaced := false
		for i, f := range args {
			if strings.Contains(f, "%s") {
				args[i] = strings.ReplaceAll(f, "%s", target)
				replaced = true
			}
		}
		if !replaced {
			args = append(args, target)
		}
		return exec.Command(args[0], args[1:]...)
	}
	switch runtime.GOOS {
	case "darwin":
		return exec.Command("open", target)
	case "windows":
		return exec.Command("rundll32", "url.dll,FileProtocolHandler", target)
	}
	return exec.Command("xdg-open", target)
}
