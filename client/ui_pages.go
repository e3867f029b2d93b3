package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/client/pinlock"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/cli"
	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/platform"
)

func (s *uiServer) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.home)
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.loginSubmit)
	m.HandleFunc("POST /logout", s.logout)
	m.HandleFunc("POST /lang", s.setLang)
	m.HandleFunc("GET /status", s.keyState)
	m.Handle("GET /static/", staticHandler())
	m.HandleFunc("GET /overview", s.withKey(s.overview))
	m.HandleFunc("GET /consumption", s.withKey(s.consumption))
	m.HandleFunc("GET /bills", s.withKey(s.bills))
	m.HandleFunc("GET /bills/{id}", s.withKey(s.bill))
	m.HandleFunc("GET /bills/{id}/pdf", s.withKey(s.billPDF))
	m.HandleFunc("GET /history", s.withKey(s.history))
	m.HandleFunc("GET /pay", s.withKey(s.payPage))
	m.HandleFunc("POST /pay", s.withKey(s.paySubmit))
	m.HandleFunc("GET /pay/{key}", s.withKey(s.payStatus))
	m.HandleFunc("GET /wallet", s.withKey(s.walletPage))
	m.HandleFunc("POST /wallet/load", s.withKey(s.loadSubmit))
	m.HandleFunc("POST /wallet/load/confirm", s.withKey(s.loadConfirm))
	m.HandleFunc("POST /wallet/load/cancel", s.withKey(s.loadCancel))
	m.HandleFunc("GET /wallet/load/{id}", s.withKey(s.loadResultPage))
	m.HandleFunc("POST /wallet/card", s.withKey(s.cardSubmit))
	m.HandleFunc("POST /wallet/card/issue", s.withKey(s.cardIssueSubmit))
	m.HandleFunc("/", s.notFound)
	s.mux = m
}

// page is what every page shows around its content.
type page struct {
	Lang     string
	Page     string // the nav entry
	TitleKey string
	Title    string // when not a plain message
	CSRF     string
	Back     string // this page's path and query, for the language switch
	Unlocked bool
	Who      *whoView
	Err      *uiErr
}

type whoView struct {
	Name, CustomerID string
}

// T translates key; templates call it as .T "key" (or $.T inside range).
func (p page) T(key string) string { return tr(p.Lang, key) }

// Tf translates key with fmt arguments.
func (p page) Tf(key string, args ...any) string { return trf(p.Lang, key, args...) }

func (p page) BillStatus(st platform.BillStatus) string { return uiBillStatus(p.Lang, st) }

func (p page) PaymentStatus(st platform.PaymentStatus) string { return uiPaymentStatus(p.Lang, st) }

func (p page) CustomerType(t platform.CustomerType) string { return uiCustomerType(p.Lang, t) }

func (p page) Channel(c string) string { return trOr(p.Lang, "chan.", c) }

func (p page) Yuan(f money.Fen) string { return f.Display() }

func (p page) HeadTitle() string {
	if p.Title != "" {
		return p.Title
	}
	return p.T(p.TitleKey)
}

func (s *uiServer) page(r *http.Request, name, titleKey string) page {
	c := callOf(r)
	p := page{Lang: c.lang, Page: name, TitleKey: titleKey, CSRF: c.client.csrf, Back: r.URL.RequestURI()}
	if r.Method != http.MethodGet {
		p.Back = "/" + name
	}
	if ks := s.keys.current(); ks != nil {
		p.Unlocked = true
		if me := ks.me.Load(); me != nil {
			p.Who = &whoView{Name: me.Customer.Name, CustomerID: me.Customer.ID}
		} else {
			p.Who = &whoView{CustomerID: ks.id.CustomerID}
		}
	}
	return p
}

// uiErr is an error as a page shows it: a translated headline and the
// technical detail (the gateway's message and request ID, or the client's
// own message), never a stack trace.
type uiErr struct {
	Title  string
	Detail string
}

func describeError(lang string, err error) *uiErr {
	if err == nil {
		return nil
	}
	var gw *gatewayError
	if errors.As(err, &gw) {
		key := "err.gateway"
		switch gw.Code {
		case api.CodeNoCertificate:
			key = "err.no_certificate"
		case api.CodeUnknownCA:
			key = "err.unknown_ca"
		case api.CodeCertExpired:
			key = "err.cert_expired"
		case api.CodeCertRevoked:
			key = "err.cert_revoked"
		case api.CodeCertInvalid:
			key = "err.cert_invalid"
		case api.CodeNotBound:
			key = "err.not_bound"
		case api.CodeRateLimited:
			key = "err.rate_limited"
		case api.CodeNotFound:
			key = "err.not_found"
		case api.CodeInvalidRequest:
			key = "err.invalid_request"
		case api.CodeUnavailable:
			key = "err.unavailable"
		}
		return &uiErr{Title: tr(lang, key), Detail: gw.Error()}
	}
	key := "error.title"
	switch {
	case errors.Is(err, pinlock.ErrLocked):
		var le *pinlock.LockedError
		if errors.As(err, &le) {
			return &uiErr{Title: trf(lang, "login.locked", le.Max)}
		}
		key = "login.state.locked"
	case errors.Is(err, hsm.ErrPINLocked):
		key = "login.tokenlocked"
	case errors.Is(err, hsm.ErrPINLength), errors.Is(err, hsm.ErrPINInvalid):
		key = "err.pin_form"
	case errors.Is(err, hsm.ErrPINExpired):
		key = "err.pin_expired"
	case errors.Is(err, hsm.ErrDeviceRemoved):
		key = "err.token_removed"
	case errors.Is(err, hsm.ErrTokenAbsent):
		key = "err.token_absent"
	default:
		switch cli.ExitCode(err) {
		case cli.ExitUnavailable:
			key = "err.unreachable"
		case cli.ExitAuth:
			key = "err.auth"
		case cli.ExitConfig:
			key = "err.config"
		case cli.ExitNotFound:
			key = "err.not_found"
		}
	}
	return &uiErr{Title: tr(lang, key), Detail: err.Error()}
}

// statusFor is the HTTP status of a page showing err.
func statusFor(err error) int {
	switch cli.ExitCode(err) {
	case cli.ExitNotFound:
		return http.StatusNotFound
	case cli.ExitUnavailable:
		return http.StatusServiceUnavailable
	case cli.ExitUsage:
		return http.StatusBadRequest
	}
	return http.StatusBadGateway
}

// keyHandler serves a page that needs the unlocked key. It renders the
// page itself, or returns an error (from the gateway) for withKey to show.
type keyHandler func(w http.ResponseWriter, r *http.Request, ks *uiSession) error

// withKey sends to the login page when the key is locked, and after an
// error that makes the key useless (revoked, unbound, pulled out) ends the
// session and goes there too, with the reason.
func (s *uiServer) withKey(h keyHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ks, release := s.keys.acquire()
		if ks == nil {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		err := h(w, r, ks)
		release()
		if err == nil {
			return
		}
		if sessionFatal(err) {
			s.keys.end(ks, endRefused, err)
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		s.renderError(w, r, err)
	}
}

type errorView struct {
	page
	Retry string
}

func (s *uiServer) renderError(w http.ResponseWriter, r *http.Request, err error) {
	p := s.page(r, "error", "error.title")
	p.Err = describeError(p.Lang, err)
	s.render(w, statusFor(err), "error", errorView{page: p, Retry: r.URL.RequestURI()})
}

func (s *uiServer) notFound(w http.ResponseWriter, r *http.Request) {
	p := s.page(r, "error", "notfound.title")
	p.Err = &uiErr{Title: p.T("notfound.title"), Detail: r.URL.Path}
	s.render(w, http.StatusNotFound, "error", errorView{page: p, Retry: "/"})
}

func (s *uiServer) home(w http.ResponseWriter, r *http.Request) {
	if s.keys.current() != nil {
		http.Redirect(w, r, "/overview", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// setLang remembers the language and goes back to the page it was asked
// from (a local path only).
func (s *uiServer) setLang(w http.ResponseWriter, r *http.Request) {
	form := callOf(r).form
	lang := langZH
	if form.get("lang") == langEN {
		lang = langEN
	}
	http.SetCookie(w, &http.Cookie{Name: langCookie, Value: lang, Path: "/", MaxAge: 365 * 24 * 3600, SameSite: http.SameSiteStrictMode, HttpOnly: true})
	back := form.get("back")
	if !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") || strings.HasPrefix(back, "/\\") {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// ---- login ----

type loginView struct {
	page
	Key      keyStatus
	KeyText  string
	Tries    string // earlier wrong PINs, when there are
	PINError string
	Ended    string
	Holder   string
	Expires  string
	Problem  string
}

func (s *uiServer) loginView(r *http.Request) loginView {
	p := s.page(r, "login", "login.title")
	v := loginView{page: p, Key: s.keys.status(r.Context())}
	v.KeyText = keyStateText(p.Lang, v.Key)
	k := v.Key
	if k.State == keyReady && k.Failures > 0 {
		v.Tries = p.Tf("login.tries", k.Failures, k.Remaining)
	}
	if k.Problem != nil && k.State == keyProblem {
		v.Problem = k.Problem.Error()
	}
	if k.State == keyLocked {
		if k.TokenLocked {
			v.Problem = p.T("login.tokenlocked")
		} else {
			v.Problem = p.Tf("login.locked", k.Max)
		}
	}
	if ks := s.keys.current(); ks != nil {
		v.Holder = ks.id.CustomerID
		if me := ks.me.Load(); me != nil {
			v.Holder = me.Customer.Name + " (" + me.Customer.ID + ")"
		}
		v.Expires = uiInstant(ks.key.Leaf.NotAfter)
	} else if end := s.keys.lastEnd(); end != nil {
		switch end.reason {
		case endLogout:
			v.Ended = p.T("end.logout")
		case endIdle:
			v.Ended = p.Tf("end.idle", s.keys.idle.String())
		case endRemoved:
			v.Ended = p.T("end.removed")
		case endRefused:
			v.Ended = p.T("end.refused")
			v.Err = describeError(p.Lang, end.err)
		}
	}
	return v
}

func keyStateText(lang string, k keyStatus) string {
	switch k.State {
	case keyAbsent:
		return tr(lang, "login.state.absent")
	case keyReady:
		return tr(lang, "login.state.ready")
	case keyLocked:
		return tr(lang, "login.state.locked")
	case keyUnlocked:
		return tr(lang, "login.state.unlock")
	}
	return tr(lang, "login.state.error")
}

func (s *uiServer) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "login", s.loginView(r))
}

// keyState is polled by the login page every two seconds.
func (s *uiServer) keyState(w http.ResponseWriter, r *http.Request) {
	k := s.keys.status(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		State     string `json:"state"`
		Text      string `json:"text"`
		Remaining int    `json:"remaining"`
	}{k.State, keyStateText(langOf(r), k), k.Remaining})
}

// loginSubmit tries the PIN typed on the page. The PIN is never logged nor
// written back into the page, and zeroed once tried (the form's values are
// zeroed when the request ends, the copy hsm got right after C_Login).
func (s *uiServer) loginSubmit(w http.ResponseWriter, r *http.Request) {
	call := callOf(r)
	pin := call.form["pin"]
	defer clear(pin)
	if s.keys.current() != nil {
		http.Redirect(w, r, "/overview", http.StatusSeeOther)
		return
	}
	again := func(status int, pinErr string, err error) {
		v := s.loginView(r)
		v.PINError = pinErr
		if err != nil {
			v.Err = describeError(v.Lang, err)
		}
		s.render(w, status, "login", v)
	}
	lang := call.lang
	if len(pin) == 0 {
		again(http.StatusOK, tr(lang, "login.empty"), nil)
		return
	}
	if !s.keys.attempt.TryLock() {
		again(http.StatusConflict, tr(lang, "login.busy"), nil)
		return
	}
	defer s.keys.attempt.Unlock()
	ctx := r.Context()
	st := s.keys.status(ctx)
	if st.State != keyReady {
		again(http.StatusOK, "", nil) // the page says what is wrong with the key
		return
	}
	finalOK := call.form.get("final_try") == "1"
	if st.FinalTry && !finalOK && !s.a.allowFinalTry {
		again(http.StatusOK, tr(lang, "login.final.need"), nil)
		return
	}
	_, err := s.keys.login(ctx, pin, finalOK)
	switch {
	case err == nil:
		http.Redirect(w, r, "/overview", http.StatusSeeOther)
	case errors.Is(err, hsm.ErrWrongPIN):
		after := s.keys.status(ctx)
		msg := tr(lang, "login.wrong.last")
		switch {
		case after.State == keyLocked:
			msg = trf(lang, "login.locked", after.Max)
		case after.Remaining > 1:
			msg = trf(lang, "login.wrong", after.Remaining)
		}
		again(http.StatusOK, msg, nil)
	default:
		again(http.StatusOK, "", err)
	}
}

func (s *uiServer) logout(w http.ResponseWriter, r *http.Request) {
	s.keys.end(nil, endLogout, nil)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// ---- overview ----

type overviewView struct {
	page
	Me         api.Me
	CertUntil  string
	CertSoon   bool
	KeyLabel   string
	KeySerial  string
	Alerts     []alertView // the first few, in the gateway's order (most urgent first)
	MoreAlerts []alertView // the rest, folded
	BalanceDue money.Fen
	Unpaid     int
	Arrears    api.ArrearsSummary
	NextDue    *platform.Bill
	// Wallet is the wallet on the key, nil when it cannot be read.
	Wallet *walletFigure
}

type walletFigure struct {
	Balance  money.Fen
	Sequence uint64
}

// shownAlerts is how many alerts the overview shows unfolded: a customer
// long in arrears has one per bill.
const shownAlerts = 3

type alertView struct {
	Level  string // critical, warning, info
	Label  string
	BillID string
	Text   string
}

func (s *uiServer) overview(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	ctx := r.Context()
	var me api.Me
	if err := ks.gw.get(ctx, api.PathMe, nil, &me); err != nil {
		return err
	}
	ks.me.Store(&me)
	var ar api.ArrearsSummary
	if err := ks.gw.get(ctx, api.PathArrears, nil, &ar); err != nil {
		return err
	}
	var unpaid api.BillList
	if err := ks.gw.get(ctx, api.PathBills, url.Values{"status": {"unpaid"}}, &unpaid); err != nil {
		return err
	}
	p := s.page(r, "overview", "ov.title")
	v := overviewView{page: p, Me: me, Arrears: ar, Unpaid: len(unpaid.Items),
		KeyLabel: ks.key.TokenLabel, KeySerial: ks.key.TokenSerial}
	leaf := ks.key.Leaf
	v.CertUntil = uiInstant(leaf.NotAfter)
	v.CertSoon = leaf.NotAfter.Sub(s.now()) < expiryWarning
	byID := map[string]platform.Bill{}
	for _, b := range unpaid.Items {
		byID[b.ID] = b
		v.BalanceDue += b.AmountDue
		if b.Status == platform.BillOpen && (v.NextDue == nil || b.DueDate < v.NextDue.DueDate) {
			v.NextDue = &b
		}
	}
	if wal, err := s.readKeyWallet(ctx, ks); err == nil {
		v.Wallet = &walletFigure{Balance: wal.Balance(), Sequence: wal.Sequence()}
	}
	for i, al := range me.Alerts {
		av := alertText(p.Lang, al, byID, s.now())
		if i < shownAlerts {
			v.Alerts = append(v.Alerts, av)
		} else {
			v.MoreAlerts = append(v.MoreAlerts, av)
		}
	}
	s.render(w, http.StatusOK, "overview", v)
	return nil
}

// alertText shows an alert in the page's language. The gateway writes its
// messages in English; in Chinese the text is rebuilt from the bill the
// alert names (the gateway's message stays the fallback).
func alertText(lang string, al api.Alert, bills map[string]platform.Bill, now time.Time) alertView {
	v := alertView{Level: string(al.Level), Label: uiAlertLevel(lang, al.Level), BillID: al.BillID, Text: al.Message}
	b, ok := bills[al.BillID]
	if lang != langZH || !ok {
		return v
	}
	switch al.Level {
	case api.AlertCritical, api.AlertWarning:
		v.Text = trf(lang, "alert.overdue", b.Period, daysOverdue(b.DueDate, now), b.DueDate, b.AmountDue.Display(), b.LateFee.Display())
		if al.Level == api.AlertCritical {
			v.Text += tr(lang, "alert.suspend")
		} else {
			v.Text += tr(lang, "alert.grows")
		}
	case api.AlertInfo:
		v.Text = trf(lang, "alert.soon", b.Period, b.DueDate, b.AmountDue.Display())
	}
	return v
}

// daysOverdue counts Shanghai calendar days past due, at least 1.
func daysOverdue(due platform.Date, now time.Time) int {
	d, err := time.ParseInLocation(time.DateOnly, string(due), platform.Shanghai)
	if err != nil {
		return 1
	}
	today, _ := time.ParseInLocation(time.DateOnly, string(platform.DateOf(now)), platform.Shanghai)
	return max(1, int(today.Sub(d).Hours()/24+0.5))
}

// ---- consumption ----

type consumptionView struct {
	page
	From, To string
	FormErr  string
	Months   []monthUse
	Sum      monthUse
	Chart    chartView
	Caption  string
	Points   int
}

func (s *uiServer) consumption(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	p := s.page(r, "consumption", "use.title")
	v := consumptionView{page: p, From: r.URL.Query().Get("from"), To: r.URL.Query().Get("to")}
	q, msg := monthRange(p.Lang, v.From, v.To)
	if msg != "" {
		v.FormErr = msg
		s.render(w, http.StatusBadRequest, "consumption", v)
		return nil
	}
	var list api.ConsumptionList
	if err := ks.gw.get(r.Context(), api.PathConsumption, q, &list); err != nil {
		return err
	}
	v.From, v.To = string(list.From), string(list.To)
	v.Months, v.Points = monthlyUse(list.Items)
	for _, m := range v.Months {
		v.Sum.Peak += m.Peak
		v.Sum.Flat += m.Flat
		v.Sum.Valley += m.Valley
		v.Sum.Total += m.Total
	}
	if len(v.Months) > 0 {
		v.Caption = p.Tf("use.chart", v.Months[0].Period, v.Months[len(v.Months)-1].Period)
		v.Chart = newChart(v.Months, chartLabels{Peak: p.T("use.peak"), Flat: p.T("use.flat"), Valley: p.T("use.valley"), Caption: v.Caption})
	}
	s.render(w, http.StatusOK, "consumption", v)
	return nil
}

// monthRange checks the form's months as periodRange does for the CLI,
// with messages for the page.
func monthRange(lang, from, to string) (url.Values, string) {
	q := url.Values{}
	var f, t platform.Period
	var err error
	if from != "" {
		if f, err = platform.ParsePeriod(from); err != nil {
			return nil, tr(lang, "err.month")
		}
		q.Set("from", string(f))
	}
	if to != "" {
		if t, err = platform.ParsePeriod(to); err != nil {
			return nil, tr(lang, "err.month")
		}
		q.Set("to", string(t))
	}
	if f != "" && t != "" {
		if f > t {
			return nil, tr(lang, "err.order")
		}
		if months(f, t) > api.MaxMonths {
			return nil, trf(lang, "err.range", api.MaxMonths)
		}
	}
	return q, ""
}

// monthUse is one month summed over the metering points.
type monthUse struct {
	Period                    platform.Period
	Peak, Flat, Valley, Total int64
}

// monthlyUse sums the metering points month by month, in month order, and
// counts the points.
func monthlyUse(items []platform.Consumption) ([]monthUse, int) {
	byMonth := map[platform.Period]*monthUse{}
	points := map[string]bool{}
	for _, c := range items {
		m := byMonth[c.Period]
		if m == nil {
			m = &monthUse{Period: c.Period}
			byMonth[c.Period] = m
		}
		m.Peak += c.PeakKWh
		m.Flat += c.FlatKWh
		m.Valley += c.ValleyKWh
		m.Total += c.TotalKWh
		points[c.MeteringPointID] = true
	}
	out := make([]monthUse, 0, len(byMonth))
	for _, m := range byMonth {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Period < out[j].Period })
	return out, len(points)
}

// ---- bills ----

type billsView struct {
	page
	All   bool
	Bills []platform.Bill
	Due   money.Fen
}

func (s *uiServer) bills(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	p := s.page(r, "bills", "bills.title")
	v := billsView{page: p, All: r.URL.Query().Get("view") == "all"}
	status := "unpaid"
	if v.All {
		status = "all"
	}
	var list api.BillList
	if err := ks.gw.get(r.Context(), api.PathBills, url.Values{"status": {status}}, &list); err != nil {
		return err
	}
	v.Bills = list.Items
	if v.All {
		// Unpaid bills stay oldest first (paid in that order); the whole
		// record reads newest first.
		sort.SliceStable(v.Bills, func(i, j int) bool { return v.Bills[i].Period > v.Bills[j].Period })
	}
	for _, b := range list.Items {
		v.Due += b.AmountDue
	}
	s.render(w, http.StatusOK, "bills", v)
	return nil
}

type billView struct {
	page
	Bill    platform.Bill
	PaidNeg money.Fen
}

func (s *uiServer) fetchBill(ctx context.Context, ks *uiSession, id string) (platform.Bill, error) {
	var b platform.Bill
	err := ks.gw.get(ctx, api.PathBill+url.PathEscape(id), nil, &b)
	return b, err
}

func (s *uiServer) bill(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	b, err := s.fetchBill(r.Context(), ks, r.PathValue("id"))
	if err != nil {
		return err
	}
	p := s.page(r, "bills", "bills.title")
	p.Title = p.Tf("bill.title", b.ID)
	s.render(w, http.StatusOK, "bill", billView{page: p, Bill: b, PaidNeg: -b.Paid})
	return nil
}

// billPDF downloads the e-bill.
func (s *uiServer) billPDF(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	ctx := r.Context()
	b, err := s.fetchBill(ctx, ks, r.PathValue("id"))
	if err != nil {
		return err
	}
	me := ks.me.Load()
	if me == nil {
		var fresh api.Me
		if err := ks.gw.get(ctx, api.PathMe, nil, &fresh); err != nil {
			return err
		}
		ks.me.Store(&fresh)
		me = &fresh
	}
	doc := billPDF(callOf(r).lang, b, me.Customer, s.now())
	w.Header().Set("Content-Type", "application/pdf")
	w.Header().Set("Content-Disposition", `attachment; filename="`+pdfFileName(b.ID)+`"`)
	_, _ = w.Write(doc)
	return nil
}

// pdfFileName keeps the bill ID's safe characters only.
func pdfFileName(id string) string {
	var b strings.Builder
	for _, c := range id {
		if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b.WriteRune(c)
		}
	}
	return "gridpay-bill-" + b.String() + ".pdf"
}

// ---- history ----

type historyView struct {
	page
	From, To, Q, Status string
	// Kind is "", "payments" or "loads".
	Kind     string
	FormErr  string
	Items    []platform.Payment
	Received money.Fen
	// Loads are the key's loads (this computer's signed log); Loaded is
	// what they put in the wallet.
	ShowPayments, ShowLoads bool
	Loads                   []loadRow
	Loaded                  money.Fen
	LogProblem              string
	LoadStatuses            []string
}

func (s *uiServer) history(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	p := s.page(r, "history", "hist.title")
	qs := r.URL.Query()
	v := historyView{page: p, From: qs.Get("from"), To: qs.Get("to"), Q: strings.TrimSpace(qs.Get("q")), Status: qs.Get("status"),
		Kind: qs.Get("kind"), LoadStatuses: loadHistoryStatuses}
	if v.Kind != "payments" && v.Kind != "loads" {
		v.Kind = ""
	}
	// A status belongs to payments or to loads: filtering by it shows those.
	loadStatus := slices.Contains(loadHistoryStatuses, v.Status)
	v.ShowPayments = v.Kind != "loads" && !loadStatus
	v.ShowLoads = v.Kind != "payments" && (v.Status == "" || loadStatus)
	q := url.Values{}
	var f, t platform.Date
	var err error
	if v.From != "" {
		if f, err = platform.ParseDate(v.From); err != nil {
			v.FormErr = p.T("err.date")
		}
		q.Set("from", string(f))
	}
	if v.To != "" && v.FormErr == "" {
		if t, err = platform.ParseDate(v.To); err != nil {
			v.FormErr = p.T("err.date")
		}
		q.Set("to", string(t))
	}
	if v.FormErr == "" && f != "" && t != "" && f > t {
		v.FormErr = p.T("err.order")
	}
	if v.FormErr != "" {
		s.render(w, http.StatusBadRequest, "history", v)
		return nil
	}
	if v.ShowPayments {
		var list api.PaymentList
		if err := ks.gw.get(r.Context(), api.PathPayments, q, &list); err != nil {
			return err
		}
		for _, pay := range list.Items {
			if !matchPayment(pay, v.Q, v.Status) {
				continue
			}
			v.Items = append(v.Items, pay)
			if pay.Status != platform.PaymentReversed {
				v.Received += pay.Amount
			}
		}
	}
	if v.ShowLoads {
		loads, problem := s.historyLoads(r.Context(), ks)
		v.LogProblem = problem
		for _, l := range loads {
			if !matchLoad(l, f, t, v.Q, v.Status) {
				continue
			}
			v.Loads = append(v.Loads, l)
			if l.Status == histLoaded {
				v.Loaded += l.Amount
			}
		}
	}
	s.render(w, http.StatusOK, "history", v)
	return nil
}

// matchPayment applies the search (reference or bill ID, case-insensitive,
// part of it) and the status filter.
func matchPayment(p platform.Payment, q, status string) bool {
	if status != "" && string(p.Status) != status {
		return false
	}
	if q == "" {
		return true
	}
	q = strings.ToLower(q)
	if strings.Contains(strings.ToLower(p.Reference), q) {
		return true
	}
	for _, a := range p.Allocations {
		if strings.Contains(strings.ToLower(a.BillID), q) {
			return true
		}
	}
	return false
}
