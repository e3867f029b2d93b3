package unionpay

import (
	"net/url"
)

// ParseNotification verifies and reads a notification posted by the
// gateway: a back notification to backUrl, or the signed result the payer's
// browser brings back to frontUrl (same fields). The gateway certificate in
// signPubKeyCert must chain to the configured roots (ErrBadCertificate) and
// the signature verify with it (ErrBadSignature); fields given twice,
// missing, malformed, or naming another merchant are ErrMalformed. Errors
// name the field, never the card number.
//
// Answer the gateway HTTP 200 as soon as the notification is safely
// handed on: it resends up to five times in all, and the same
// notification may arrive again, and out of order with others.
func (c *Client) ParseNotification(form url.Values) (Notification, error) {
	return c.parseNotification(form)
}

// notificationRequired are the fields every notification must carry
// besides the signature and certificate.
var notificationRequired = []string{
	FieldVersion, FieldEncoding, FieldSignMethod, FieldTxnType, FieldTxnSubType, FieldMerID,
	FieldOrderID, FieldTxnTime, FieldTxnAmt, FieldQueryID, FieldRespCode,
}

func (c *Client) parseNotification(form url.Values) (Notification, error) {
	if len(form) == 0 {
		return Notification{}, fieldErr(ErrMalformed, "", "empty notification")
	}
	a, err := single(form)
	if err != nil {
		return Notification{}, err
	}
	for _, f := range []string{FieldSignature, FieldSignPubKeyCert} {
		if _, ok := a[f]; !ok {
			kind := ErrBadSignature
			if f == FieldSignPubKeyCert {
				kind = ErrBadCertificate
			}
			return Notification{}, fieldErr(kind, f, "missing")
		}
	}
	for _, f := range notificationRequired {
		if _, ok := a[f]; !ok {
			return Notification{}, fieldErr(ErrMalformed, f, "missing")
		}
	}
	if err := c.verify(a); err != nil {
		return Notification{}, err
	}
	if a[FieldMerID] != c.cfg.MerchantID {
		return Notification{}, fieldErr(ErrMalformed, FieldMerID, "notification for merchant %q, not ours", clip(a[FieldMerID]))
	}
	if a[FieldEncoding] != Encoding {
		return Notification{}, fieldErr(ErrMalformed, FieldEncoding, "%q, want %s", clip(a[FieldEncoding]), Encoding)
	}
	n := Notification{
		TxnType:  a[FieldTxnType],
		OrderID:  a[FieldOrderID],
		QueryID:  a[FieldQueryID],
		RespCode: a[FieldRespCode],
		RespMsg:  a[FieldRespMsg],
	}
	switch n.TxnType {
	case TxnConsume:
		if _, ok := a[FieldOrigQryID]; ok {
			return Notification{}, fieldErr(ErrMalformed, FieldOrigQryID, "present in a consume notification")
		}
	case TxnRefund, TxnCancel:
		n.OrigQueryID = a[FieldOrigQryID]
		if err := CheckQueryID(n.OrigQueryID); err != nil {
			return Notification{}, fieldErr(ErrMalformed, FieldOrigQryID, "%v", err)
		}
	default:
		return Notification{}, fieldErr(ErrMalformed, FieldTxnType, "%q is not a consume, refund or cancel", clip(n.TxnType))
	}
	if err := CheckOrderID(n.OrderID); err != nil {
		return Notification{}, fieldErr(ErrMalformed, FieldOrderID, "%v", err)
	}
	if n.TxnTime, err = ParseTime(a[FieldTxnTime]); err != nil {
		return Notification{}, fieldErr(ErrMalformed, FieldTxnTime, "%v", err)
	}
	if err := CheckQueryID(n.QueryID); err != nil {
		return Notification{}, fieldErr(ErrMalformed, FieldQueryID, "%v", err)
	}
	if !respCodeRE.MatchString(n.RespCode) {
		return Notification{}, fieldErr(ErrMalformed, FieldRespCode, "%q is not a response code", clip(n.RespCode))
	}
	if n.Amount, err = ParseAmount(a[FieldTxnAmt]); err != nil {
		return Notification{}, fieldErr(ErrMalformed, FieldTxnAmt, "%v", err)
	}
	if cc, ok := a[FieldCurrencyCode]; ok && cc != CurrencyCNY {
		return Notification{}, fieldErr(ErrMalformed, FieldCurrencyCode, "%q, want %s (CNY)", clip(cc), CurrencyCNY)
	}
	if sd, ok := a[FieldSettleDate]; ok {
		if err := CheckSettleDate(sd); err != nil {
			return Notification{}, fieldErr(ErrMalformed, FieldSettleDate, "%v", err)
		}
		n.SettleDate = sd
	} else if n.RespCode == RespSuccess {
		return Notification{}, fieldErr(ErrMalformed, FieldSettleDate, "missing in a successful notification")
	}
	n.Outcome = Classify(n.RespCode)
	return n, nil
}
