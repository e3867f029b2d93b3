package simunionpay

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"strings"

	up "github.com/gridpay/gridpay/unionpay"
)

// reconText writes the reconciliation file of a merchant and settlement
// date in the format unionpay/file.go documents: a header, one D line per
// successful transaction, a trailer with the count and the totals.
func reconText(merID, settleDate string, txns []Transaction) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|%s\n", up.ReconFileMagic, up.ReconFileVersion, merID, settleDate)
	var consumes, reversals int64
	for _, t := range txns {
		fmt.Fprintf(&b, "D|%s|%s|%s|%s|%s|%d|%s\n", t.TxnType, t.OrderID, t.TxnTime, t.QueryID, t.OrigQueryID, int64(t.Amount), t.RespCode)
		if t.TxnType == up.TxnConsume {
			consumes += int64(t.Amount)
		} else {
			reversals += int64(t.Amount)
		}
	}
	fmt.Fprintf(&b, "END|%d|%d|%d\n", len(txns), consumes, reversals)
	return []byte(b.String())
}

// encodeFileContent is fileContent: base64 of the zlib-compressed text.
func encodeFileContent(text []byte) (string, error) {
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	if _, err := zw.Write(text); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b.Bytes()), nil
}
