package hsm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePINFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
	return p
}

func TestPINFromFile(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{"123456\n", "123456"},
		{"123456\r\n", "123456"},
		{"123456", "123456"},
		{"12 34\n", "12 34"},
	} {
		pin, err := PINFromFile(writePINFile(t, tc.content, 0o600)).Read()
		if err != nil {
			t.Fatal(err)
		}
		if string(pin) != tc.want {
			t.Errorf("file %q gave %q, want %q", tc.content, pin, tc.want)
		}
	}
	if _, err := PINFromFile(writePINFile(t, "123456\n", 0o640)).Read(); err != nil {
		t.Errorf("group-readable file refused: %v", err)
	}
}

func TestPINFileRefusals(t *testing.T) {
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"world-readable": {"secret-pin\n", 0o644, "chmod o-rwx"},
		"world-writable": {"secret-pin\n", 0o602, "chmod o-rwx"},
		"empty":          {"\n", 0o600, "empty"},
		"too large":      {strings.Repeat("x", 5000), 0o600, "larger"},
	} {
		_, err := PINFromFile(writePINFile(t, tc.content, tc.mode)).Read()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one mentioning %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret-pin") {
			t.Errorf("%s: error contains the PIN", name)
		}
	}
	if _, err := PINFromFile(filepath.Join(t.TempDir(), "missing")).Read(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestPINFromEnv(t *testing.T) {
	t.Setenv("GRIDPAY_TEST_PIN", "4321")
	pin, err := PINFromEnv("GRIDPAY_TEST_PIN").Read()
	if err != nil || string(pin) != "4321" {
		t.Fatalf("got %q, %v", pin, err)
	}
	_, err = PINFromEnv("GRIDPAY_TEST_PIN_UNSET").Read()
	if !errors.Is(err, ErrNoPINSource) || !strings.Contains(err.Error(), "GRIDPAY_TEST_PIN_UNSET") {
		t.Errorf("unset variable: err = %v", err)
	}
}

func stubTerminal(t *testing.T, terminal bool, input string) *bytes.Buffer {
	t.Helper()
	oldIs, oldRead, oldOut := isTerminal, readPassword, promptOut
	t.Cleanup(func() { isTerminal, readPassword, promptOut = oldIs, oldRead, oldOut })
	out := new(bytes.Buffer)
	isTerminal = func(int) bool { return terminal }
	readPassword = func(int) ([]byte, error) {
		if !terminal {
			return nil, errors.New("readPassword called without a terminal")
		}
		return []byte(input), nil
	}
	promptOut = out
	return out
}

func TestPINPromptNeedsTerminal(t *testing.T) {
	stubTerminal(t, false, "")
	for _, src := range []PINSource{{}, PINFromPrompt()} {
		_, err := src.Read()
		if !errors.Is(err, ErrNoPINSource) || !strings.Contains(err.Error(), "not a terminal") {
			t.Errorf("%q without a terminal: err = %v", src, err)
		}
	}
}

func TestPINPrompt(t *testing.T) {
	out := stubTerminal(t, true, "2468")
	pin, err := PINFromPrompt().WithPrompt("USB key PIN: ").Read()
	if err != nil || string(pin) != "2468" {
		t.Fatalf("got %q, %v", pin, err)
	}
	if !strings.HasPrefix(out.String(), "USB key PIN: ") || strings.Contains(out.String(), "2468") {
		t.Errorf("terminal output %q", out)
	}
	Zero(pin)
	if !bytes.Equal(pin, make([]byte, 4)) {
		t.Error("Zero left bytes behind")
	}
}

func TestParsePINSource(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "",
		"prompt":                  "prompt",
		"file:/etc/gridpay/pin":   "file:/etc/gridpay/pin",
		"file:///etc/gridpay/pin": "file:/etc/gridpay/pin",
		"env:GRIDPAY_PIN":         "env:GRIDPAY_PIN",
	} {
		src, err := ParsePINSource(in)
		if err != nil {
			t.Errorf("ParsePINSource(%q): %v", in, err)
			continue
		}
		if src.String() != want {
			t.Errorf("ParsePINSource(%q).String() = %q, want %q", in, src, want)
		}
	}
	for _, bad := range []string{"file:", "env:", "env:A=B", "1234", "pin-value:1234"} {
		_, err := ParsePINSource(bad)
		if err == nil {
			t.Errorf("ParsePINSource(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), "1234") {
			t.Errorf("ParsePINSource(%q) error %q echoes the value", bad, err)
		}
	}
}
