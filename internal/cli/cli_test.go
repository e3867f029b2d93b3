package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

var errSpecial = errors.New("special")

func TestExitCode(t *testing.T) {
	RegisterClassifier(func(err error) (int, bool) {
		if errors.Is(err, errSpecial) {
			return ExitConflict, true
		}
		return 0, false
	})
	cases := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("plain"), ExitError},
		{WithCode(ExitAuth, errors.New("wrong PIN")), ExitAuth},
		{fmt.Errorf("wrapped: %w", WithCode(ExitNotFound, errors.New("no bill"))), ExitNotFound},
		{fmt.Errorf("classified: %w", errSpecial), ExitConflict},
		{WithCode(ExitUsage, errSpecial), ExitUsage}, // an explicit code wins over classifiers
	}
	for _, c := range cases {
		if got := ExitCode(c.err); got != c.want {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if WithCode(ExitAuth, nil) != nil {
		t.Error("WithCode(nil) must stay nil")
	}
}

func TestOutput(t *testing.T) {
	var b bytes.Buffer
	if err := (Output{JSON: true, W: &b}).Print(map[string]int{"a": 1}, func(io.Writer) { t.Error("human printer called in JSON mode") }); err != nil {
		t.Fatal(err)
	}
	if b.String() != "{\n  \"a\": 1\n}\n" {
		t.Fatalf("JSON output %q", b.String())
	}
	b.Reset()
	_ = Output{W: &b}.Print(nil, func(w io.Writer) { fmt.Fprint(w, "human") })
	if b.String() != "human" {
		t.Fatalf("human output %q", b.String())
	}
}
