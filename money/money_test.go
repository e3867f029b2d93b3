package money

import (
	"errors"
	"testing"
)

func TestParseYuan(t *testing.T) {
	good := map[string]Fen{
		"500": 50000, "500.5": 50050, "500.00": 50000, "0.01": 1, "¥1,234.56": 123456, " 7 ": 700, "100000000": Max,
	}
	for in, want := range good {
		if got, err := ParseYuan(in); err != nil || got != want {
			t.Errorf("ParseYuan(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.234", "1.", ".5", "1e3", "abc", "100000000.01", "99999999999999999999", "1 000", "+5", "NaN"} {
		if _, err := ParseYuan(in); !errors.Is(err, ErrBadAmount) {
			t.Errorf("ParseYuan(%q) accepted", in)
		}
	}
}

func TestFormat(t *testing.T) {
	cases := map[Fen]string{0: "0.00", 5: "0.05", 123456: "1234.56", -5: "-0.05", Max: "100000000.00"}
	for f, want := range cases {
		if got := f.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(f), got, want)
		}
	}
	display := map[Fen]string{123456789: "¥1,234,567.89", 100: "¥1.00", -123456: "-¥1,234.56", 99999: "¥999.99"}
	for f, want := range display {
		if got := f.Display(); got != want {
			t.Errorf("%d.Display() = %q, want %q", int64(f), got, want)
		}
	}
}

func FuzzParseRoundTrip(f *testing.F) {
	for _, s := range []string{"1.00", "0.5", "¥12,345.67", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseYuan(s)
		if err != nil {
			return
		}
		if v < 0 || v > Max {
			t.Fatalf("ParseYuan(%q) = %d out of range", s, v)
		}
		back, err := ParseYuan(v.String())
		if err != nil || back != v {
			t.Fatalf("round trip of %q: %d → %q → %d, %v", s, v, v.String(), back, err)
		}
	})
}
