package simunionpay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/money"
	"github.com/gridpay/gridpay/store"
	up "github.com/gridpay/gridpay/unionpay"
)

// Test actions: a consume form posted to PathFront+"?sim_action=approve"
// (or decline) is decided at once, as if the payer had clicked; the auto
// approve fault does the same for every form.
const (
	ActionApprove = "approve"
	ActionDecline = "decline"
)

// TestCard is the card number used when a payment is approved without the
// pay page (Luhn-valid; only its last four digits are kept).
const TestCard = "6216261000000000018"

// handleFront takes the signed consume form the payer's browser posts, and
// shows the pay page (by a redirect, so that reloading is harmless).
func (s *Server) handleFront(w http.ResponseWriter, r *http.Request) {
	req, rf := readFields(w, r)
	var o consumeOrder
	if rf == nil {
		o, rf = s.checkConsume(req)
	}
	if rf != nil {
		s.log.Info("consume form refused", zap.String("resp_code", rf.code), zap.String("detail", rf.detail),
			zap.String("mer_id", clip(req[up.FieldMerID])), zap.String("order_id", clip(req[up.FieldOrderID])))
		s.errorPage(w, http.StatusBadRequest, rf.code, respMsg(rf.code, rf.detail))
		return
	}
	ctx := r.Context()
	now := s.opts.Now()
	if !o.payTimeout.After(now) {
		s.errorPage(w, http.StatusBadRequest, up.RespOutOfTime, respMsg(up.RespOutOfTime, "payTimeout "+req[up.FieldPayTimeout]+" has passed"))
		return
	}
	var t Transaction
	err := s.transact(ctx, func(tx pgx.Tx) error {
		var err error
		t, rf, err = s.acceptConsume(ctx, tx, req, o, now)
		return err
	})
	if err != nil {
		s.log.Error("consume", zap.Error(err))
		s.errorPage(w, http.StatusInternalServerError, up.RespBusy, respMsg(up.RespBusy, "internal error"))
		return
	}
	if rf != nil {
		s.errorPage(w, http.StatusBadRequest, rf.code, respMsg(rf.code, rf.detail))
		return
	}
	action := r.URL.Query().Get("sim_action")
	if s.faults.get().AutoApprove && action == "" {
		action = ActionApprove
	}
	if t.Status == StatusPending && (action == ActionApprove || action == ActionDecline) {
		if t, err = s.decide(ctx, t.payToken, action == ActionApprove, TestCard[len(TestCard)-4:]); err != nil {
			s.log.Error("deciding a consume", zap.Error(err))
			s.errorPage(w, http.StatusInternalServerError, up.RespBusy, respMsg(up.RespBusy, "internal error"))
			return
		}
	}
	if t.Status != StatusPending {
		s.returnPage(w, r, t)
		return
	}
	http.Redirect(w, r, PathPay+t.payToken, http.StatusSeeOther)
}

type consumeOrder struct {
	amount     money.Fen
	payTimeout time.Time
}

func (s *Server) checkConsume(req map[string]string) (consumeOrder, *refusal) {
	if rf := s.checkRequest(req, up.TxnConsume, up.FieldTxnSubType, up.FieldBizType, up.FieldChannelType, up.FieldAccessType,
		up.FieldOrderID, up.FieldTxnTime, up.FieldTxnAmt, up.FieldCurrencyCode, up.FieldFrontURL, up.FieldBackURL, up.FieldPayTimeout); rf != nil {
		return consumeOrder{}, rf
	}
	if req[up.FieldTxnSubType] != up.SubTypeConsume || req[up.FieldBizType] != up.BizTypeGateway {
		return consumeOrder{}, refuse(up.RespFormat, "txnSubType %q / bizType %q are not 01 / 000201", clip(req[up.FieldTxnSubType]), clip(req[up.FieldBizType]))
	}
	var o consumeOrder
	var err error
	if o.amount, err = up.ParseAmount(req[up.FieldTxnAmt]); err != nil {
		return consumeOrder{}, refuse(up.RespFormat, "txnAmt: %v", err)
	}
	txnTime, _ := up.ParseTime(req[up.FieldTxnTime])
	if o.payTimeout, err = up.ParseTime(req[up.FieldPayTimeout]); err != nil {
		return consumeOrder{}, refuse(up.RespFormat, "payTimeout: %v", err)
	}
	if !o.payTimeout.After(txnTime) {
		return consumeOrder{}, refuse(up.RespFormat, "payTimeout is not after txnTime")
	}
	for _, k := range []string{up.FieldFrontURL, up.FieldBackURL} {
		if err := checkNotifyURL(req[k]); err != nil {
			return consumeOrder{}, refuse(up.RespFormat, "%s: %v", k, err)
		}
	}
	if d := req[up.FieldOrderDesc]; !utf8.ValidString(d) || utf8.RuneCountInString(d) > 64 {
		return consumeOrder{}, refuse(up.RespFormat, "orderDesc is not UTF-8 of at most 64 characters")
	}
	return o, nil
}

// acceptConsume records a new consume, or finds the one a resent form
// made. The same orderId and txnTime with other content is a duplicate.
func (s *Server) acceptConsume(ctx context.Context, tx pgx.Tx, req map[string]string, o consumeOrder, now time.Time) (Transaction, *refusal, error) {
	digest := requestDigest(req)
	prev, err := txnByKey(ctx, tx, req[up.FieldMerID], req[up.FieldOrderID], req[up.FieldTxnTime], false)
	if err == nil {
		if prev.requestDigest != digest {
			return Transaction{}, refuse(up.RespDuplicate, "orderId %s with txnTime %s was sent before with other content", prev.OrderID, prev.TxnTime), nil
		}
		return prev, nil, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Transaction{}, nil, err
	}
	queryID, traceNo, err := newIDs(ctx, tx, now)
	if err != nil {
		return Transaction{}, nil, err
	}
	var tok [16]byte
	rand.Read(tok[:])
	t := Transaction{
		QueryID: queryID, MerID: req[up.FieldMerID], OrderID: req[up.FieldOrderID], TxnTime: req[up.FieldTxnTime],
		TxnType: up.TxnConsume, Amount: o.amount, Status: StatusPending, FrontURL: req[up.FieldFrontURL],
		BackURL: req[up.FieldBackURL], PayTimeout: o.payTimeout, Description: req[up.FieldOrderDesc],
		TraceNo: traceNo, CreatedAt: now, payToken: hex.EncodeToString(tok[:]), requestDigest: digest,
	}
	if err := insertTxn(ctx, tx, &t); err != nil {
		return Transaction{}, nil, err
	}
	s.log.Info("consume accepted", zap.String("query_id", t.QueryID), zap.String("mer_id", t.MerID),
		zap.String("order_id", t.OrderID), zap.Int64("amount", int64(t.Amount)))
	return t, nil, nil
}

// decide approves or declines a pending consume, once: a decided consume
// stays as it is. Past its pay timeout, a consume is refused (39) whatever
// the payer clicks. The back notification is queued in the same
// transaction.
func (s *Server) decide(ctx context.Context, token string, approve bool, last4 string) (Transaction, error) {
	var t Transaction
	err := s.db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		if t, err = txnByToken(ctx, tx, token, true); err != nil || t.Status != StatusPending {
			return err
		}
		now := s.opts.Now()
		switch {
		case now.After(t.PayTimeout):
			t.Status, t.RespCode, t.RespMsg = StatusFailed, up.RespOutOfTime, respMsg(up.RespOutOfTime, "the pay timeout passed")
		case approve:
			t.Status, t.RespCode, t.RespMsg = StatusSucceeded, up.RespSuccess, respMsg(up.RespSuccess, "")
			t.SettleDay = dayOf(now)
			t.SettleDate = t.SettleDay.Format("0102")
			t.CardLast4 = last4
		default:
			t.Status, t.RespCode, t.RespMsg = StatusFailed, up.RespFailed, respMsg(up.RespFailed, "declined by the payer")
		}
		t.FinishedAt = now
		if err := finishTxn(ctx, tx, &t); err != nil {
			return err
		}
		return s.queueNotification(ctx, tx, t)
	})
	if err != nil {
		return Transaction{}, err
	}
	s.log.Info("consume decided", zap.String("query_id", t.QueryID), zap.String("resp_code", t.RespCode))
	s.wake(s.wakeNotifier)
	return t, nil
}

// expireIfDue closes a pending consume whose pay timeout has passed
// (39): from then on the gateway's answer is final.
func (s *Server) expireIfDue(ctx context.Context, t Transaction) (Transaction, error) {
	if t.TxnType != up.TxnConsume || t.Status != StatusPending || !s.opts.Now().After(t.PayTimeout) {
		return t, nil
	}
	return s.decide(ctx, t.payToken, false, "")
}

func (s *Server) handlePayPage(w http.ResponseWriter, r *http.Request) {
	t, err := txnByToken(r.Context(), s.db, r.PathValue("token"), false)
	if err == nil {
		t, err = s.expireIfDue(r.Context(), t)
	}
	if errors.Is(err, ErrNotFound) {
		s.errorPage(w, http.StatusNotFound, up.RespNotFound, respMsg(up.RespNotFound, "no such payment"))
		return
	}
	if err != nil {
		s.log.Error("pay page", zap.Error(err))
		s.errorPage(w, http.StatusInternalServerError, up.RespBusy, respMsg(up.RespBusy, "internal error"))
		return
	}
	if t.Status != StatusPending {
		s.returnPage(w, r, t)
		return
	}
	s.payPage(w, http.StatusOK, t, "")
}

// handlePay takes the payer's click on the pay page.
func (s *Server) handlePay(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxRequest)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	token := r.PathValue("token")
	t, err := txnByToken(ctx, s.db, token, false)
	if errors.Is(err, ErrNotFound) {
		s.errorPage(w, http.StatusNotFound, up.RespNotFound, respMsg(up.RespNotFound, "no such payment"))
		return
	}
	if err != nil {
		s.log.Error("pay", zap.Error(err))
		s.errorPage(w, http.StatusInternalServerError, up.RespBusy, respMsg(up.RespBusy, "internal error"))
		return
	}
	var last4 string
	action := r.PostForm.Get("action")
	switch action {
	case ActionApprove:
		card, ok := cardNumber(r.PostForm.Get("cardNumber"))
		if !ok && t.Status == StatusPending && !s.opts.Now().After(t.PayTimeout) {
			s.payPage(w, http.StatusUnprocessableEntity, t, respMsg(up.RespInvalidCardNum, "not a valid card number"))
			return
		}
		if ok {
			last4 = card[len(card)-4:]
		}
	case ActionDecline:
	default:
		s.payPage(w, http.StatusBadRequest, t, "Choose Approve or Decline.")
		return
	}
	if t, err = s.decide(ctx, token, action == ActionApprove, last4); err != nil {
		s.log.Error("pay", zap.Error(err))
		s.errorPage(w, http.StatusInternalServerError, up.RespBusy, respMsg(up.RespBusy, "internal error"))
		return
	}
	s.returnPage(w, r, t)
}

// cardNumber normalises a typed card number (spaces and dashes allowed)
// and checks it: 13 to 19 digits passing the Luhn check.
func cardNumber(s string) (string, bool) {
	s = strings.NewReplacer(" ", "", "-", "").Replace(s)
	if len(s) < 13 || len(s) > 19 {
		return "", false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return s, luhn(s)
}

// luhn is the mod-10 check of card numbers: from the right, every second
// digit doubled (minus 9 when over 9), the sum a multiple of 10.
func luhn(digits string) bool {
	sum := 0
	for i := 0; i < len(digits); i++ {
		d := int(digits[len(digits)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.}} · 银联在线支付 (simulator)</title>
<style>
body{font-family:system-ui,sans-serif;background:#f3f5f8;margin:0}
main{max-width:28rem;margin:3rem auto;background:#fff;border-radius:8px;padding:1.5rem 2rem;box-shadow:0 1px 4px #0002}
h1{font-size:1.2rem;color:#d7000f} .amount{font-size:2rem;font-weight:600;margin:.5rem 0}
dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem 1rem;font-size:.9rem} dt{color:#666}
input[type=text]{width:100%;font-size:1.1rem;padding:.5rem;box-sizing:border-box;letter-spacing:.1em}
.buttons{display:flex;gap:1rem;margin-top:1rem} button{flex:1;font-size:1rem;padding:.6rem;border-radius:4px;border:1px solid #999;cursor:pointer}
button.approve{background:#d7000f;color:#fff;border-color:#d7000f} .error{color:#b00;font-weight:600} .note{color:#888;font-size:.8rem}
</style></head><body><main>
{{end}}
{{define "foot"}}<p class="note">UnionPay gateway simulator — development and tests only. Card numbers are checked (Luhn) and forgotten; only the last four digits are kept.</p>
</main></body></html>
{{end}}

{{define "pay"}}{{template "head" "Pay"}}
<h1>银联在线支付 · UnionPay online payment</h1>
<div class="amount" id="amount">{{.Amount}}</div>
<dl>
<dt>Merchant</dt><dd id="mer-id">{{.MerID}}</dd>
<dt>Order</dt><dd id="order-id">{{.OrderID}}</dd>
{{if .Description}}<dt>Description</dt><dd id="description">{{.Description}}</dd>{{end}}
<dt>Pay before</dt><dd id="pay-timeout">{{.PayTimeout}}</dd>
</dl>
{{if .Error}}<p class="error" id="error">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}" autocomplete="off">
<label for="cardNumber">Card number · 卡号</label>
<input type="text" id="cardNumber" name="cardNumber" inputmode="numeric" autocomplete="cc-number" placeholder="6216 2610 0000 0000 018">
<div class="buttons">
<button type="submit" class="approve" name="action" value="approve">Approve · 确认付款</button>
<button type="submit" class="decline" name="action" value="decline" formnovalidate>Decline · 取消</button>
</div>
</form>
{{template "foot"}}{{end}}

{{define "return"}}{{template "head" "Result"}}
<h1 id="result" data-resp-code="{{.RespCode}}">{{.Title}}</h1>
<p>{{.RespMsg}}</p>
<p>Returning to the merchant…</p>
<form id="back" method="post" action="{{.Action}}" accept-charset="UTF-8">
{{- range .Fields}}
<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{- end}}
<button type="submit">Return to the merchant · 返回商户</button>
</form>
<script>document.getElementById('back').submit()</script>
{{template "foot"}}{{end}}

{{define "error"}}{{template "head" "Error"}}
<h1>The gateway refused the request</h1>
<p class="error" id="error" data-resp-code="{{.Code}}">respCode {{.Code}}: {{.Msg}}</p>
{{template "foot"}}{{end}}
`))

func (s *Server) payPage(w http.ResponseWriter, status int, t Transaction, errMsg string) {
	s.render(w, status, "pay", map[string]any{
		"Amount": t.Amount.Display(), "MerID": t.MerID, "OrderID": t.OrderID, "Description": t.Description,
		"PayTimeout": t.PayTimeout.In(up.Shanghai).Format("2006-01-02 15:04:05") + " (Beijing time)",
		"Action":     PathPay + t.payToken, "Error": errMsg,
	})
}

// returnPage takes the payer back to the merchant's frontUrl with the
// signed result (the same fields as the back notification).
func (s *Server) returnPage(w http.ResponseWriter, r *http.Request, t Transaction) {
	fields, err := s.resultFields(r.Context(), t)
	if err != nil {
		s.log.Error("signing a result", zap.Error(err))
		s.errorPage(w, http.StatusInternalServerError, up.RespBusy, respMsg(up.RespBusy, "internal error"))
		return
	}
	type field struct{ Name, Value string }
	var fs []field
	for k, v := range fields {
		fs = append(fs, field{k, v})
	}
	slices.SortFunc(fs, func(a, b field) int { return strings.Compare(a.Name, b.Name) })
	title := "Payment declined · 支付失败"
	if t.Status == StatusSucceeded {
		title = "Payment successful · 支付成功"
	}
	s.render(w, http.StatusOK, "return", map[string]any{
		"Title": title, "RespCode": t.RespCode, "RespMsg": t.RespMsg, "Action": t.FrontURL, "Fields": fs,
	})
}

func (s *Server) errorPage(w http.ResponseWriter, status int, code, msg string) {
	s.render(w, status, "error", map[string]any{"Code": code, "Msg": msg})
}

func (s *Server) render(w http.ResponseWriter, status int, page string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, page, data); err != nil {
		s.log.Error("rendering a page", zap.String("page", page), zap.Error(err))
	}
}
