package unionpay

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gridpay/gridpay/money"
)

// Field names of the protocol, as the gateway spells them.
const (
	FieldVersion            = "version"
	FieldEncoding           = "encoding"
	FieldSignMethod         = "signMethod"
	FieldCertID             = "certId"
	FieldSignature          = "signature"
	FieldSignPubKeyCert     = "signPubKeyCert"
	FieldTxnType            = "txnType"
	FieldTxnSubType         = "txnSubType"
	FieldBizType            = "bizType"
	FieldChannelType        = "channelType"
	FieldAccessType         = "accessType"
	FieldMerID              = "merId"
	FieldOrderID            = "orderId"
	FieldTxnTime            = "txnTime"
	FieldTxnAmt             = "txnAmt"
	FieldCurrencyCode       = "currencyCode"
	FieldFrontURL           = "frontUrl"
	FieldBackURL            = "backUrl"
	FieldPayTimeout         = "payTimeout"
	FieldOrderDesc          = "orderDesc"
	FieldQueryID            = "queryId"
	FieldOrigQryID          = "origQryId"
	FieldRespCode           = "respCode"
	FieldRespMsg            = "respMsg"
	FieldOrigRespCode       = "origRespCode"
	FieldOrigRespMsg        = "origRespMsg"
	FieldSettleDate         = "settleDate"
	FieldSettleAmt          = "settleAmt"
	FieldSettleCurrencyCode = "settleCurrencyCode"
	FieldTraceNo            = "traceNo"
	FieldTraceTime          = "traceTime"
	FieldFileType           = "fileType"
	FieldFileName           = "fileName"
	FieldFileContent        = "fileContent"
	// FieldAccNo is the card number. GridPay never asks for it; if the
	// gateway sends it anyway it is never logged nor put into an error.
	FieldAccNo = "accNo"
)

// Fixed values of the fields every message carries.
const (
	Version         = "5.1.0"
	Encoding        = "UTF-8"
	SignMethodRSA   = "01" // SHA-256 digest signed with SHA256withRSA
	CurrencyCNY     = "156"
	BizTypeGateway  = "000201" // online gateway payment
	BizTypeDefault  = "000000" // queries and file downloads
	ChannelInternet = "07"
	AccessMerchant  = "0" // the merchant connects directly
	FileTypeDefault = "00"
	// SubTypes: consume is 01, everything else GridPay sends is 00 except
	// the file download (01).
	SubTypeConsume  = "01"
	SubTypeDefault  = "00"
	SubTypeFileDown = "01"
)

// TimeLayout is the layout of txnTime and payTimeout: YYYYMMDDhhmmss in
// Asia/Shanghai.
const TimeLayout = "20060102150405"

// Shanghai is the gateway's time zone.
var Shanghai = shanghai()

func shanghai() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		// Without tzdata, the fixed offset is exact: China has had no
		// daylight saving time since 1991.
		return time.FixedZone("CST", 8*3600)
	}
	return loc
}

// FormatTime renders an instant as the gateway's YYYYMMDDhhmmss in Shanghai.
func FormatTime(t time.Time) string { return t.In(Shanghai).Format(TimeLayout) }

// ParseTime parses a YYYYMMDDhhmmss time in Shanghai, strictly: exactly 14
// digits naming a real instant.
func ParseTime(s string) (time.Time, error) {
	if len(s) != len(TimeLayout) || !allDigits(s) {
		return time.Time{}, fmt.Errorf("time %q is not YYYYMMDDhhmmss", clip(s))
	}
	t, err := time.ParseInLocation(TimeLayout, s, Shanghai)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q is not a real time", clip(s))
	}
	return t, nil
}

// SettleDateOf is the settlement date (MMDD, Shanghai) of an instant.
func SettleDateOf(t time.Time) string { return t.In(Shanghai).Format("0102") }

// CheckSettleDate checks the form of a settlement date, MMDD.
func CheckSettleDate(s string) error {
	if len(s) != 4 || !allDigits(s) {
		return fmt.Errorf("settle date %q is not MMDD", clip(s))
	}
	m, _ := strconv.Atoi(s[:2])
	d, _ := strconv.Atoi(s[2:])
	// 2024 is a leap year: 0229 is a settlement date too.
	if m < 1 || m > 12 || d < 1 || d > time.Date(2024, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return fmt.Errorf("settle date %q is not a day of the year", s)
	}
	return nil
}

// FormatAmount renders fen as txnAmt: decimal digits, no sign, no leading
// zeros.
func FormatAmount(f money.Fen) string { return strconv.FormatInt(int64(f), 10) }

// ParseAmount parses txnAmt strictly: 1 to money.Max fen, digits only, no
// leading zeros.
func ParseAmount(s string) (money.Fen, error) {
	if s == "" || len(s) > 12 || !allDigits(s) || s[0] == '0' {
		return 0, fmt.Errorf("amount %q is not a positive number of fen", clip(s))
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 || money.Fen(v) > money.Max {
		return 0, fmt.Errorf("amount %q is out of range (1 to %d fen)", clip(s), int64(money.Max))
	}
	return money.Fen(v), nil
}

var orderIDRE = regexp.MustCompile(`^[0-9A-Za-z]{8,32}$`)

// CheckOrderID checks a merchant order number: 8 to 32 letters and digits.
func CheckOrderID(s string) error {
	if !orderIDRE.MatchString(s) {
		return fmt.Errorf("order ID %q is not 8 to 32 letters and digits", clip(s))
	}
	return nil
}

var merIDRE = regexp.MustCompile(`^[0-9A-Za-z]{1,32}$`)

// CheckMerchantID checks a merchant ID (merId): letters and digits (the
// gateway assigns 15).
func CheckMerchantID(s string) error {
	if !merIDRE.MatchString(s) {
		return fmt.Errorf("merchant ID %q is not 1 to 32 letters and digits", clip(s))
	}
	return nil
}

var queryIDRE = regexp.MustCompile(`^[0-9A-Za-z]{1,32}$`)

// CheckQueryID checks a gateway transaction ID (queryId, origQryId).
func CheckQueryID(s string) error {
	if !queryIDRE.MatchString(s) {
		return fmt.Errorf("query ID %q is not 1 to 32 letters and digits", clip(s))
	}
	return nil
}

var respCodeRE = regexp.MustCompile(`^[0-9A-Z]{2}$`)

// maxDescription bounds orderDesc, in characters.
const maxDescription = 64

func checkDescription(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("description is not UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > maxDescription {
		return fmt.Errorf("description is %d characters long, over %d", n, maxDescription)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("description holds a control character")
		}
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// clip keeps error messages short and printable whatever a peer sent.
func clip(s string) string {
	const max = 40
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "…"
	}
	return s
}
