package simunionpay

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/gridpay/gridpay/money"
	up "github.com/gridpay/gridpay/unionpay"
)

// respMsgs are the gateway's messages for the codes the simulator answers
// (the ACP appendix's wording).
var respMsgs = map[string]string{
	up.RespSuccess:        "成功[0000000]",
	up.RespFailed:         "交易失败",
	up.RespUnknown03:      "交易通讯超时，请发起查询交易",
	up.RespUnknown04:      "交易状态未明，请查询对账结果",
	up.RespUnknown05:      "交易已受理，请稍后查询交易结果",
	up.RespBusy:           "系统繁忙，请稍后再试",
	up.RespFormat:         "报文格式错误",
	up.RespSignature:      "验证签名失败",
	up.RespDuplicate:      "重复交易",
	up.RespMissing:        "报文交易要素缺失",
	up.RespAmountLimit:    "交易金额超限",
	up.RespNotFound:       "查无此交易",
	up.RespOrigState:      "原交易不存在或状态不正确",
	up.RespOrigMismatch:   "与原交易信息不符",
	up.RespOutOfTime:      "交易不在受理时间范围内",
	up.RespAlreadyRefund:  "原交易已被成功退货或已被成功撤销",
	up.RespInvalidCardNum: "输入的卡号无效，请确认后输入",
	up.RespNoFile:         "文件不存在",
	up.RespGeneric:        "通用错误",
}

// respMsg is the message of a code, with the simulator's detail in
// brackets (in English, for the developer reading it).
func respMsg(code, detail string) string {
	m := respMsgs[code]
	if detail != "" {
		m += "[" + detail + "]"
	}
	return m
}

// refusal is a request the simulator answers with an error code.
type refusal struct {
	code   string
	detail string
}

func refuse(code, format string, args ...any) *refusal {
	return &refusal{code: code, detail: fmt.Sprintf(format, args...)}
}

// maxRequest bounds a request body: a form is a few kilobytes.
const maxRequest = 64 << 10

// readFields reads a posted form into single-valued fields.
func readFields(w http.ResponseWriter, r *http.Request) (map[string]string, *refusal) {
	r.Body = http.MaxBytesReader(w, r.Body, maxRequest)
	if err := r.ParseForm(); err != nil {
		return nil, refuse(up.RespFormat, "the body is not a form of at most %d bytes", maxRequest)
	}
	f := make(map[string]string, len(r.PostForm))
	for k, vs := range r.PostForm {
		if len(vs) != 1 {
			return nil, refuse(up.RespFormat, "field %s given %d times", k, len(vs))
		}
		f[k] = vs[0]
	}
	return f, nil
}

// checkRequest verifies the envelope and the merchant's signature of a
// request, and the presence of required fields. It returns the merchant's
// certificate.
func (s *Server) checkRequest(f map[string]string, txnType string, required ...string) *refusal {
	for _, k := range append([]string{up.FieldVersion, up.FieldEncoding, up.FieldSignMethod, up.FieldTxnType,
		up.FieldMerID, up.FieldCertID, up.FieldSignature}, required...) {
		if f[k] == "" {
			return refuse(up.RespMissing, "%s is missing", k)
		}
	}
	if f[up.FieldVersion] != up.Version {
		return refuse(up.RespFormat, "version %q is not %s", clip(f[up.FieldVersion]), up.Version)
	}
	if !strings.EqualFold(f[up.FieldEncoding], up.Encoding) {
		return refuse(up.RespFormat, "encoding %q is not UTF-8", clip(f[up.FieldEncoding]))
	}
	if f[up.FieldSignMethod] != up.SignMethodRSA {
		return refuse(up.RespFormat, "signMethod %q is not 01", clip(f[up.FieldSignMethod]))
	}
	mc, ok := s.mer.lookup(f[up.FieldCertID])
	if !ok {
		return refuse(up.RespSignature, "unknown certId %s", clip(f[up.FieldCertID]))
	}
	if mc.MerchantID != f[up.FieldMerID] {
		return refuse(up.RespSignature, "certId %s is not a certificate of merchant %s", clip(f[up.FieldCertID]), clip(f[up.FieldMerID]))
	}
	if now := s.opts.Now(); now.Before(mc.Cert.NotBefore) || now.After(mc.Cert.NotAfter) {
		return refuse(up.RespSignature, "the merchant certificate %s is outside its validity", f[up.FieldCertID])
	}
	if err := up.Verify(mc.Cert.PublicKey.(*rsa.PublicKey), f); err != nil {
		return refuse(up.RespSignature, "the signature does not verify with certificate %s", f[up.FieldCertID])
	}
	if f[up.FieldTxnType] != txnType {
		return refuse(up.RespFormat, "txnType %q is not served here", clip(f[up.FieldTxnType]))
	}
	if v, ok := f[up.FieldOrderID]; ok {
		if err := up.CheckOrderID(v); err != nil {
			return refuse(up.RespFormat, "%v", err)
		}
	}
	if v, ok := f[up.FieldTxnTime]; ok {
		if _, err := up.ParseTime(v); err != nil {
			return refuse(up.RespFormat, "txnTime: %v", err)
		}
	}
	if v, ok := f[up.FieldAccessType]; ok && v != up.AccessMerchant {
		return refuse(up.RespFormat, "accessType %q is not 0", clip(v))
	}
	if v, ok := f[up.FieldCurrencyCode]; ok && v != up.CurrencyCNY {
		return refuse(up.RespFormat, "currencyCode %q is not 156", clip(v))
	}
	return nil
}

// requestDigest identifies the content of a request for idempotent
// resends: the signed fields except the signature and the certificate that
// made it (a renewed certificate may resend the same request).
func requestDigest(f map[string]string) string {
	c := make(map[string]string, len(f))
	for k, v := range f {
		if k != up.FieldSignature && k != up.FieldCertID {
			c[k] = v
		}
	}
	sum := sha256.Sum256([]byte(up.SigningString(c)))
	return hex.EncodeToString(sum[:])
}

// echoed are the request fields an answer repeats.
var echoed = []string{up.FieldTxnType, up.FieldTxnSubType, up.FieldBizType, up.FieldAccessType, up.FieldMerID, up.FieldOrderID, up.FieldTxnTime}

func answerFor(req map[string]string, code, detail string) map[string]string {
	a := map[string]string{up.FieldRespCode: code, up.FieldRespMsg: respMsg(code, detail)}
	for _, k := range echoed {
		if v := req[k]; v != "" && len(v) <= 64 {
			a[k] = v
		}
	}
	return a
}

// sign completes and signs a message of the gateway.
func (s *Server) sign(ctx context.Context, a map[string]string) (map[string]string, error) {
	a[up.FieldVersion] = up.Version
	a[up.FieldEncoding] = up.Encoding
	a[up.FieldSignMethod] = up.SignMethodRSA
	a[up.FieldSignPubKeyCert] = s.pki.certPEM
	delete(a, up.FieldSignature)
	sig, err := up.Sign(ctx, s.pki.key, a)
	if err != nil {
		return nil, err
	}
	a[up.FieldSignature] = sig
	return a, nil
}

// answer writes a signed, form-encoded answer. (The real gateway writes
// values without URL encoding; the simulator encodes them properly.)
func (s *Server) answer(w http.ResponseWriter, r *http.Request, a map[string]string) {
	a, err := s.sign(r.Context(), a)
	if err != nil {
		s.log.Error("signing an answer", zap.Error(err))
		http.Error(w, "signing failed", http.StatusInternalServerError)
		return
	}
	v := url.Values{}
	for k, x := range a {
		v.Set(k, x)
	}
	w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, v.Encode())
}

func (s *Server) refused(w http.ResponseWriter, r *http.Request, req map[string]string, rf *refusal) {
	s.log.Info("request refused", zap.String("path", r.URL.Path), zap.String("resp_code", rf.code), zap.String("detail", rf.detail),
		zap.String("mer_id", clip(req[up.FieldMerID])), zap.String("order_id", clip(req[up.FieldOrderID])))
	s.answer(w, r, answerFor(req, rf.code, rf.detail))
}

func postOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		h(w, r)
	}
}

func (s *Server) gatewayHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(PathFront, postOnly(s.handleFront))
	mux.HandleFunc(PathBack, postOnly(s.handleBack))
	mux.HandleFunc(PathQuery, postOnly(s.handleQuery))
	mux.HandleFunc(PathFile, postOnly(s.handleFile))
	mux.HandleFunc("GET "+PathPay+"{token}", s.handlePayPage)
	mux.HandleFunc("POST "+PathPay+"{token}", s.handlePay)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "UnionPay gateway simulator (ACP %s)\nfront: %s\nback: %s\nquery: %s\nfile: %s\n",
			up.Version, PathFront, PathBack, PathQuery, PathFile)
	})
	return mux
}

// handleQuery answers a query (txnType 00) with the transaction's state.
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	req, rf := readFields(w, r)
	if rf == nil {
		rf = s.checkRequest(req, up.TxnQuery, up.FieldOrderID, up.FieldTxnTime)
	}
	if rf != nil {
		s.refused(w, r, req, rf)
		return
	}
	if code, ok := s.faults.queryFault(time.Now()); ok {
		s.log.Info("query answered unknown (fault)", zap.String("order_id", req[up.FieldOrderID]), zap.String("resp_code", code))
		s.answer(w, r, answerFor(req, code, "fault injected"))
		return
	}
	ctx := r.Context()
	t, err := txnByKey(ctx, s.db, req[up.FieldMerID], req[up.FieldOrderID], req[up.FieldTxnTime], false)
	if errors.Is(err, ErrNotFound) {
		s.answer(w, r, answerFor(req, up.RespNotFound, ""))
		return
	}
	if err == nil {
		t, err = s.expireIfDue(ctx, t)
	}
	if err != nil {
		s.internal(w, r, req, err)
		return
	}
	a := answerFor(req, up.RespSuccess, "")
	s.describe(a, t)
	if t.Status == StatusPending {
		a[up.FieldOrigRespCode], a[up.FieldOrigRespMsg] = up.RespUnknown05, respMsg(up.RespUnknown05, "")
	} else {
		a[up.FieldOrigRespCode], a[up.FieldOrigRespMsg] = t.RespCode, t.RespMsg
	}
	s.answer(w, r, a)
}

// describe adds a transaction's own fields to a message about it.
func (s *Server) describe(a map[string]string, t Transaction) {
	a[up.FieldMerID] = t.MerID
	a[up.FieldOrderID] = t.OrderID
	a[up.FieldTxnTime] = t.TxnTime
	a[up.FieldTxnType] = t.TxnType
	a[up.FieldTxnSubType] = up.SubTypeDefault
	if t.TxnType == up.TxnConsume {
		a[up.FieldTxnSubType] = up.SubTypeConsume
	}
	a[up.FieldBizType] = up.BizTypeGateway
	a[up.FieldAccessType] = up.AccessMerchant
	a[up.FieldQueryID] = t.QueryID
	a[up.FieldTxnAmt] = up.FormatAmount(t.Amount)
	a[up.FieldCurrencyCode] = up.CurrencyCNY
	a[up.FieldTraceNo] = t.TraceNo
	a[up.FieldTraceTime] = t.CreatedAt.In(up.Shanghai).Format("0102150405")
	if t.OrigQueryID != "" {
		a[up.FieldOrigQryID] = t.OrigQueryID
	}
	if t.Status == StatusSucceeded {
		a[up.FieldSettleDate] = t.SettleDate
		a[up.FieldSettleAmt] = up.FormatAmount(t.Amount)
		a[up.FieldSettleCurrencyCode] = up.CurrencyCNY
	}
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, req map[string]string, err error) {
	s.log.Error("internal error", zap.String("path", r.URL.Path), zap.Error(err))
	// 06 "system busy": nothing was decided, the merchant may try again.
	s.answer(w, r, answerFor(req, up.RespBusy, "internal error"))
}

// handleBack takes refunds (04) and cancels (31): checked and recorded at
// once, answered 00 (accepted), processed ProcessDelay later and notified.
func (s *Server) handleBack(w http.ResponseWriter, r *http.Request) {
	mode, failing := s.faults.refundFault()
	if failing && mode == RefundFailHTTP503 {
		s.log.Info("refund request failed with HTTP 503 (fault)")
		http.Error(w, "service unavailable (simulated)", http.StatusServiceUnavailable)
		return
	}
	req, rf := readFields(w, r)
	if failing && mode == RefundFail03 && rf == nil {
		s.log.Info("refund request answered 03 (fault)", zap.String("order_id", clip(req[up.FieldOrderID])))
		s.answer(w, r, answerFor(req, up.RespUnknown03, "fault injected"))
		return
	}
	txnType := req[up.FieldTxnType]
	if rf == nil && txnType != up.TxnRefund && txnType != up.TxnCancel {
		rf = refuse(up.RespFormat, "txnType %q is not 04 or 31", clip(txnType))
	}
	if rf == nil {
		rf = s.checkRequest(req, txnType, up.FieldTxnSubType, up.FieldBizType, up.FieldOrderID, up.FieldTxnTime,
			up.FieldTxnAmt, up.FieldOrigQryID, up.FieldBackURL)
	}
	var amount money.Fen
	if rf == nil {
		var err error
		if amount, err = up.ParseAmount(req[up.FieldTxnAmt]); err != nil {
			rf = refuse(up.RespFormat, "txnAmt: %v", err)
		} else if err := checkNotifyURL(req[up.FieldBackURL]); err != nil {
			rf = refuse(up.RespFormat, "backUrl: %v", err)
		} else if err := up.CheckQueryID(req[up.FieldOrigQryID]); err != nil {
			rf = refuse(up.RespOrigState, "origQryId: %v", err)
		}
	}
	if rf != nil {
		s.refused(w, r, req, rf)
		return
	}
	var t Transaction
	now := s.opts.Now()
	err := s.transact(r.Context(), func(tx pgx.Tx) error {
		var err error
		t, rf, err = s.acceptReversal(r.Context(), tx, req, amount, now)
		return err
	})
	if err != nil {
		s.internal(w, r, req, err)
		return
	}
	if rf != nil {
		s.refused(w, r, req, rf)
		return
	}
	s.wake(s.wakeProcessor)
	s.log.Info("refund accepted", zap.String("txn_type", t.TxnType), zap.String("query_id", t.QueryID),
		zap.String("orig_query_id", t.OrigQueryID), zap.Int64("amount", int64(t.Amount)))
	a := answerFor(req, up.RespSuccess, "")
	a[up.FieldQueryID] = t.QueryID
	a[up.FieldOrigQryID] = t.OrigQueryID
	a[up.FieldTxnAmt] = up.FormatAmount(t.Amount)
	if failing && mode == RefundFail03Processed {
		s.log.Info("refund processed but answered 03 (fault)", zap.String("query_id", t.QueryID))
		a = answerFor(req, up.RespUnknown03, "fault injected after processing")
	}
	s.answer(w, r, a)
}

// acceptReversal checks a refund or cancel against its consume and records
// it, in one serializable transaction. A resend of an accepted request
// (same orderId, txnTime and content) gets the same answer; the same
// orderId and txnTime with other content is a duplicate (12).
func (s *Server) acceptReversal(ctx context.Context, tx pgx.Tx, req map[string]string, amount money.Fen, now time.Time) (Transaction, *refusal, error) {
	merID, txnType := req[up.FieldMerID], req[up.FieldTxnType]
	digest := requestDigest(req)
	prev, err := txnByKey(ctx, tx, merID, req[up.FieldOrderID], req[up.FieldTxnTime], false)
	if err == nil {
		if prev.requestDigest == digest {
			return prev, nil, nil
		}
		return Transaction{}, refuse(up.RespDuplicate, "orderId %s with txnTime %s was sent before with other content", prev.OrderID, prev.TxnTime), nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Transaction{}, nil, err
	}
	orig, err := txnByQueryID(ctx, tx, req[up.FieldOrigQryID], true)
	if errors.Is(err, ErrNotFound) || (err == nil && (orig.MerID != merID || orig.TxnType != up.TxnConsume)) {
		return Transaction{}, refuse(up.RespOrigState, "no consume %s of merchant %s", clip(req[up.FieldOrigQryID]), merID), nil
	}
	if err != nil {
		return Transaction{}, nil, err
	}
	if orig.Status != StatusSucceeded {
		return Transaction{}, refuse(up.RespOrigState, "consume %s is %s", orig.QueryID, orig.Status), nil
	}
	revs, err := reversals(ctx, tx, orig.QueryID)
	if err != nil {
		return Transaction{}, nil, err
	}
	var taken money.Fen
	for _, r := range revs {
		if r.TxnType == up.TxnCancel {
			return Transaction{}, refuse(up.RespAlreadyRefund, "consume %s is cancelled", orig.QueryID), nil
		}
		taken += r.Amount
	}
	switch txnType {
	case up.TxnRefund:
		if taken >= orig.Amount {
			return Transaction{}, refuse(up.RespAlreadyRefund, "consume %s is refunded in full", orig.QueryID), nil
		}
		if taken+amount > orig.Amount {
			return Transaction{}, refuse(up.RespAmountLimit, "refund of %d fen over the %d fen left of consume %s", int64(amount), int64(orig.Amount-taken), orig.QueryID), nil
		}
	case up.TxnCancel:
		today := dayOf(now)
		if !orig.SettleDay.Equal(today) {
			return Transaction{}, refuse(up.RespOrigState, "consume %s settled on %s: only a consume of today (%s) can be cancelled; refund it",
				orig.QueryID, orig.SettleDay.Format(time.DateOnly), today.Format(time.DateOnly)), nil
		}
		if len(revs) > 0 {
			return Transaction{}, refuse(up.RespOrigState, "consume %s is partly refunded; it cannot be cancelled", orig.QueryID), nil
		}
		if amount != orig.Amount {
			return Transaction{}, refuse(up.RespOrigMismatch, "a cancel is for the full %d fen of consume %s", int64(orig.Amount), orig.QueryID), nil
		}
	}
	queryID, traceNo, err := newIDs(ctx, tx, now)
	if err != nil {
		return Transaction{}, nil, err
	}
	t := Transaction{
		QueryID: queryID, MerID: merID, OrderID: req[up.FieldOrderID], TxnTime: req[up.FieldTxnTime], TxnType: txnType,
		Amount: amount, OrigQueryID: orig.QueryID, Status: StatusPending, BackURL: req[up.FieldBackURL], TraceNo: traceNo,
		CreatedAt: now, requestDigest: digest, processAt: time.Now().Add(s.scaled(s.opts.ProcessDelay)),
	}
	if err := insertTxn(ctx, tx, &t); err != nil {
		return Transaction{}, nil, err
	}
	return t, nil, nil
}

// dayOf is the Shanghai calendar day of an instant, as midnight Shanghai.
func dayOf(t time.Time) time.Time {
	y, m, d := t.In(up.Shanghai).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, up.Shanghai)
}

// handleFile answers a reconciliation file download (txnType 76).
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	req, rf := readFields(w, r)
	if rf == nil {
		rf = s.checkRequest(req, up.TxnFileDownload, up.FieldSettleDate, up.FieldTxnTime, up.FieldFileType)
	}
	if rf == nil {
		if err := up.CheckSettleDate(req[up.FieldSettleDate]); err != nil {
			rf = refuse(up.RespFormat, "%v", err)
		} else if req[up.FieldFileType] != up.FileTypeDefault {
			rf = refuse(up.RespFormat, "fileType %q is not 00", clip(req[up.FieldFileType]))
		}
	}
	if rf != nil {
		s.refused(w, r, req, rf)
		return
	}
	day := settleDayFor(req[up.FieldSettleDate], s.opts.Now())
	txns, err := settledOn(r.Context(), s.db, req[up.FieldMerID], day)
	if err != nil {
		s.internal(w, r, req, err)
		return
	}
	content, err := encodeFileContent(reconText(req[up.FieldMerID], req[up.FieldSettleDate], txns))
	if err != nil {
		s.internal(w, r, req, err)
		return
	}
	a := answerFor(req, up.RespSuccess, "")
	a[up.FieldSettleDate] = req[up.FieldSettleDate]
	a[up.FieldFileType] = up.FileTypeDefault
	a[up.FieldFileName] = fmt.Sprintf("INN%s88ZM_%s", day.Format("060102"), req[up.FieldMerID])
	a[up.FieldFileContent] = content
	s.answer(w, r, a)
}

// settleDayFor resolves MMDD to the latest such day not after today
// (Shanghai): the gateway keeps a year of files.
func settleDayFor(mmdd string, now time.Time) time.Time {
	today := dayOf(now)
	m, d := int(mmdd[0]-'0')*10+int(mmdd[1]-'0'), int(mmdd[2]-'0')*10+int(mmdd[3]-'0')
	for y := today.Year(); ; y-- {
		day := time.Date(y, time.Month(m), d, 0, 0, 0, 0, up.Shanghai)
		// 0229 only exists in leap years; skip years where it rolls over.
		if day.Day() == d && !day.After(today) {
			return day
		}
	}
}

// checkNotifyURL checks a frontUrl or backUrl the simulator will post to.
func checkNotifyURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(s) > 512 {
		return fmt.Errorf("%q is not an absolute http(s) URL", clip(s))
	}
	return nil
}

func clip(s string) string {
	const max = 40
	if len(s) > max {
		return strings.ToValidUTF8(s[:max], "") + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// adminHandler serves faults and lookups, to loopback clients only.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, s.Faults()) })
	mux.HandleFunc("PUT /faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			http.Error(w, "faults: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.SetFaults(f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, s.Faults())
	})
	mux.HandleFunc("GET /transactions", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ts, err := s.Transactions(r.Context(), TxnFilter{MerID: q.Get("mer_id"), OrderID: q.Get("order_id"),
			TxnType: q.Get("txn_type"), OrigQueryID: q.Get("orig_query_id"), Status: Status(q.Get("status"))})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, ts)
	})
	mux.HandleFunc("GET /notifications", func(w http.ResponseWriter, r *http.Request) {
		ns, err := s.Notifications(r.Context(), r.URL.Query().Get("query_id"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, ns)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "the admin endpoint serves loopback clients only", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
