package main

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/platform"
)

// The Pay page: choose unpaid bills (or a prepaid top-up), the USB key signs
// the instruction exactly as `client pay` does, the customer opens
// UnionPay's pay page from the link, and the status page follows the
// payment until it is posted. UnionPay sends the browser back to the
// gateway's public page, not here (this window's cookie is SameSite=Strict);
// this page keeps showing the live status meanwhile.

// payLinks remembers the pay link of each payment started in this window.
type payLinks struct {
	mu    sync.Mutex
	links map[string]string
}

func (l *payLinks) set(key, link string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.links == nil {
		l.links = map[string]string{}
	}
	l.links[key] = link
}

func (l *payLinks) get(key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.links[key]
}

var uiPayLinks payLinks

type payView struct {
	page
	Bills []platform.Bill
}

func (s *uiServer) payPage(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	var list api.BillList
	if err := ks.gw.get(r.Context(), api.PathBills, url.Values{"status": {"unpaid"}}, &list); err != nil {
		return err
	}
	s.render(w, http.StatusOK, "pay", payView{page: s.page(r, "pay", "pay.title"), Bills: list.Items})
	return nil
}

func (s *uiServer) paySubmit(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	// One field per bill (bill-<ID>): the UI's form reader refuses repeated
	// field names.
	form := callOf(r).form
	var bills []string
	for name := range form {
		if id, ok := strings.CutPrefix(name, "bill-"); ok && id != "" {
			bills = append(bills, id)
		}
	}
	slices.Sort(bills)
	prepay := strings.TrimSpace(form.get("prepay"))
	if len(bills) == 0 && prepay == "" || len(bills) > 0 && prepay != "" {
		p := s.page(r, "pay", "pay.title")
		p.Err = &uiErr{Title: p.T("pay.choose.error")}
		var list api.BillList
		if err := ks.gw.get(r.Context(), api.PathBills, url.Values{"status": {"unpaid"}}, &list); err != nil {
			return err
		}
		s.render(w, http.StatusBadRequest, "pay", payView{page: p, Bills: list.Items})
		return nil
	}
	order, err := s.a.startPayment(r.Context(), ks.session, bills, prepay)
	if err != nil {
		return err
	}
	uiPayLinks.set(order.Key, order.PayURL)
	http.Redirect(w, r, "/pay/"+url.PathEscape(order.Key), http.StatusSeeOther)
	return nil
}

type payStatusView struct {
	page
	Status   api.PaymentStatus
	PostedAt time.Time
	PayURL   string
	Waiting  bool
}

func (s *uiServer) payStatus(w http.ResponseWriter, r *http.Request, ks *uiSession) error {
	key := r.PathValue("key")
	var st api.PaymentStatus
	if err := ks.gw.get(r.Context(), api.PathPayment+url.PathEscape(key), nil, &st); err != nil {
		return err
	}
	if st.Final {
		s.a.forgetPayment(key)
	}
	v := payStatusView{page: s.page(r, "pay", "pay.status.title"), Status: st, Waiting: !st.Final}
	if st.PostedAt != nil {
		v.PostedAt = *st.PostedAt
	}
	if st.Status == "awaiting_payment" {
		v.PayURL = uiPayLinks.get(key)
	}
	s.render(w, http.StatusOK, "paystatus", v)
	return nil
}
