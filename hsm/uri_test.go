package hsm

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseURIExample(t *testing.T) {
	const s = "pkcs11:token=GridPay%20HSM;object=ca-root;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/path"
	u, err := ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	if u.Token != "GridPay HSM" || u.Object != "ca-root" || !bytes.Equal(u.ID, []byte{1, 2}) ||
		u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" || u.PINSource.String() != "file:/path" {
		t.Fatalf("parsed %+v", u)
	}
	if got := u.String(); got != s {
		t.Errorf("String() = %q, want %q", got, s)
	}
	if u.Selector() != (Selector{Label: "GridPay HSM"}) {
		t.Errorf("Selector() = %+v", u.Selector())
	}
}

func TestURIRoundTrip(t *testing.T) {
	for _, u := range []*URI{
		{Token: "电力 客户", Serial: "5ed00abe505c2b13", Object: "a;b?c/d%e&f", ID: []byte{0, 0xff, 'a'}, Type: "private"},
		{Manufacturer: "SoftHSM project", Model: "SoftHSM v2", Object: "x", ModulePath: "/opt/my lib&x.so", PINSource: PINFromEnv("GRIDPAY_PIN")},
		{Token: "t", PINSource: PINFromPrompt()},
		{},
	} {
		s := u.String()
		got, err := ParseURI(s)
		if err != nil {
			t.Fatalf("ParseURI(%q): %v", s, err)
		}
		if got.String() != s || got.Token != u.Token || got.Object != u.Object || !bytes.Equal(got.ID, u.ID) ||
			got.ModulePath != u.ModulePath || got.PINSource != u.PINSource || got.Type != u.Type || got.Serial != u.Serial {
			t.Errorf("round trip of %q gave %+v", s, got)
		}
	}
}

func TestParseURIErrorsNameAttribute(t *testing.T) {
	for _, tc := range []struct{ in, attr string }{
		{"pkcs11:token=a;colour=blue", "colour"},
		{"pkcs11:token=a%2", "token"},
		{"pkcs11:object=a%zz", "object"},
		{"pkcs11:object=a b", "object"},
		{"pkcs11:token=a;token=b", "token"},
		{"pkcs11:type=banana", "type"},
		{"pkcs11:token=a?pin-value=1234", "pin-value"},
		{"pkcs11:token=a?module-name=softhsm2", "module-name"},
		{"pkcs11:token=a?pin-source=ftp:/x", "pin-source"},
		{"pkcs11:id", "id"},
	} {
		_, err := ParseURI(tc.in)
		if err == nil {
			t.Errorf("ParseURI(%q) succeeded", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.attr) {
			t.Errorf("ParseURI(%q) = %v; does not name %q", tc.in, err, tc.attr)
		}
		if strings.Contains(err.Error(), "1234") {
			t.Errorf("error %q repeats a pin-value", err)
		}
	}
	if _, err := ParseURI("http://example.com"); err == nil {
		t.Error("non-pkcs11 scheme accepted")
	}
}
