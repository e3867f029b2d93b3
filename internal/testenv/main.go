package testenv

import (
	"fmt"
	"os"
	"testing"
)

// Main runs a package's tests and then stops every shared component they
// started (the PostgreSQL cluster, the SoftHSM directory). Use it as:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if err := StopPostgresForTest(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stopping PostgreSQL:", err)
	}
	if err := RemoveSoftHSMForTest(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: removing SoftHSM:", err)
	}
	os.Exit(code)
}
