// Package money is GridPay's amount type: integer fen (1/100 yuan, CNY).
// Amounts are never floating point; they are parsed from and formatted to
// decimal text exactly.
package money

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Fen is an amount in fen (分), the smallest unit of the renminbi. Its JSON
// form is the integer number of fen.
type Fen int64

// Max bounds any single amount GridPay accepts: one hundred million yuan.
// Larger inputs are refused as mistakes long before int64 could overflow.
const Max Fen = 100_000_000_00

// ErrBadAmount is returned by ParseYuan for text that is not an amount.
var ErrBadAmount = errors.New("not an amount")

// Yuan returns a whole-yuan amount in fen.
func Yuan(y int64) Fen { return Fen(y * 100) }

// String formats the amount as yuan with two decimals: "1234.56", "-0.05".
func (f Fen) String() string {
	sign := ""
	v := int64(f)
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

// Display formats the amount for people: "¥1,234.56".
func (f Fen) Display() string {
	s := f.String()
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	whole, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return sign + "¥" + b.String() + "." + frac
}

// ParseYuan reads a non-negative yuan amount written with at most two
// decimals ("500", "500.5", "500.00", "1,234.56" and a leading "¥" are
// accepted) and returns it in fen. Anything else, including amounts above
// Max, is ErrBadAmount with the reason.
func ParseYuan(s string) (Fen, error) {
	in := s
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "¥")
	s = strings.ReplaceAll(s, ",", "")
	if s == "" {
		return 0, fmt.Errorf("%w: empty", ErrBadAmount)
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || !digits(whole) || (hasDot && (frac == "" || !digits(frac))) {
		return 0, fmt.Errorf("%w: %q is not a number of yuan like 500 or 500.00", ErrBadAmount, in)
	}
	if len(frac) > 2 {
		return 0, fmt.Errorf("%w: %q has more than two decimals (fen is the smallest unit)", ErrBadAmount, in)
	}
	if len(whole) > 12 {
		return 0, fmt.Errorf("%w: %q is too large (at most %s)", ErrBadAmount, in, Max)
	}
	y, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrBadAmount, in)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	f, _ := strconv.ParseInt(frac, 10, 64)
	v := Fen(y*100 + f)
	if v > Max {
		return 0, fmt.Errorf("%w: %q is too large (at most %s)", ErrBadAmount, in, Max)
	}
	return v, nil
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
