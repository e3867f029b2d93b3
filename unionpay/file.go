package unionpay

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// The reconciliation file (txnType 76, fileType 00)
//
// The answer's fileContent is the standard base64 (with padding) of the
// zlib (RFC 1950) compression of a UTF-8 text. The text is lines ending in
// LF (no CR), fields separated by '|', no blank lines, nothing after the
// trailer:
//
//	UPRECON|1|<merId>|<settleDate MMDD>
//	D|<txnType>|<orderId>|<txnTime>|<queryId>|<origQryId>|<txnAmt>|<respCode>
//	...
//	END|<number of D lines>|<sum of txnAmt of consumes (01)>|<sum of txnAmt of refunds and cancels (04, 31)>
//
// One D line per transaction that succeeded on that settlement date:
// txnType 01, 04 or 31; txnTime YYYYMMDDhhmmss (Shanghai) as the merchant
// sent it; origQryId empty for a consume and the consume's queryId for a
// refund or cancel; txnAmt in fen; respCode 00. The header and the trailer
// make a truncated or spliced file detectable: the parser refuses any
// deviation, naming the line.

// ReconFileMagic and ReconFileVersion open the file's header line.
const (
	ReconFileMagic   = "UPRECON"
	ReconFileVersion = "1"
)

// maxFileText bounds the decompressed file: far more than a merchant's
// day, far less than a zip bomb.
const maxFileText = 256 << 20

// DecodeFileContent undoes the fileContent encoding (base64, then zlib).
func DecodeFileContent(content string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(content)
	if err != nil {
		return nil, fieldErr(ErrMalformed, FieldFileContent, "not base64")
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fieldErr(ErrMalformed, FieldFileContent, "not zlib data: %v", err)
	}
	defer zr.Close()
	text, err := io.ReadAll(io.LimitReader(zr, maxFileText+1))
	if err != nil {
		return nil, fieldErr(ErrMalformed, FieldFileContent, "truncated or corrupt zlib data: %v", err)
	}
	if len(text) > maxFileText {
		return nil, fieldErr(ErrMalformed, FieldFileContent, "more than %d bytes uncompressed", maxFileText)
	}
	return text, nil
}

// ParseReconFile parses the text of a reconciliation file, strictly, and
// checks that it is merID's file for settleDate.
func ParseReconFile(text []byte, merID, settleDate string) ([]ReconRecord, error) {
	bad := func(line int, format string, args ...any) error {
		return fieldErr(ErrMalformed, FieldFileContent, "line %d: %s", line, fmt.Sprintf(format, args...))
	}
	s := string(text)
	if s == "" {
		return nil, bad(1, "empty file")
	}
	if !strings.HasSuffix(s, "\n") {
		return nil, bad(strings.Count(s, "\n")+1, "no line end: the file is truncated")
	}
	if strings.ContainsRune(s, '\r') {
		return nil, bad(strings.Count(s[:strings.IndexByte(s, '\r')], "\n")+1, "carriage return")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	head := strings.Split(lines[0], "|")
	if len(head) != 4 || head[0] != ReconFileMagic {
		return nil, bad(1, "not a reconciliation file header")
	}
	if head[1] != ReconFileVersion {
		return nil, bad(1, "format version %q, want %s", clip(head[1]), ReconFileVersion)
	}
	if head[2] != merID {
		return nil, bad(1, "the file of merchant %q, not %q", clip(head[2]), merID)
	}
	if head[3] != settleDate {
		return nil, bad(1, "the file of %q, not %q", clip(head[3]), settleDate)
	}
	if len(lines) < 2 {
		return nil, bad(2, "no trailer: the file is truncated")
	}
	var (
		recs          []ReconRecord
		consumes, rev int64
		seen          = map[string]bool{}
	)
	for i, line := range lines[1 : len(lines)-1] {
		n := i + 2
		f := strings.Split(line, "|")
		if f[0] == "END" {
			return nil, bad(n, "trailer before the end of the file")
		}
		if f[0] != "D" || len(f) != 8 {
			return nil, bad(n, "not a record line (want 8 fields starting with D)")
		}
		r := ReconRecord{TxnType: f[1], OrderID: f[2], QueryID: f[4], OrigQueryID: f[5], SettleDate: settleDate, RespCode: f[7]}
		switch r.TxnType {
		case TxnConsume:
			if r.OrigQueryID != "" {
				return nil, bad(n, "a consume with an origQryId")
			}
		case TxnRefund, TxnCancel:
			if err := CheckQueryID(r.OrigQueryID); err != nil {
				return nil, bad(n, "origQryId: %v", err)
			}
		default:
			return nil, bad(n, "txnType %q is not 01, 04 or 31", clip(r.TxnType))
		}
		if err := CheckOrderID(r.OrderID); err != nil {
			return nil, bad(n, "%v", err)
		}
		t, err := ParseTime(f[3])
		if err != nil {
			return nil, bad(n, "txnTime: %v", err)
		}
		r.TxnTime = t
		if err := CheckQueryID(r.QueryID); err != nil {
			return nil, bad(n, "queryId: %v", err)
		}
		if seen[r.QueryID] {
			return nil, bad(n, "queryId %s listed twice", r.QueryID)
		}
		seen[r.QueryID] = true
		if r.Amount, err = ParseAmount(f[6]); err != nil {
			return nil, bad(n, "txnAmt: %v", err)
		}
		if r.RespCode != RespSuccess {
			return nil, bad(n, "respCode %q: the file lists successful transactions only", clip(r.RespCode))
		}
		if r.TxnType == TxnConsume {
			consumes += int64(r.Amount)
		} else {
			rev += int64(r.Amount)
		}
		recs = append(recs, r)
	}
	n := len(lines)
	tail := strings.Split(lines[n-1], "|")
	if len(tail) != 4 || tail[0] != "END" {
		return nil, bad(n, "no trailer: the file is truncated")
	}
	want := []string{fmt.Sprint(len(recs)), fmt.Sprint(consumes), fmt.Sprint(rev)}
	for i, name := range []string{"record count", "consume total", "refund total"} {
		if tail[i+1] != want[i] {
			return nil, bad(n, "trailer %s %q, but the records give %s", name, clip(tail[i+1]), want[i])
		}
	}
	return recs, nil
}
