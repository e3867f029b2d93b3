package pki_test

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gridpay/gridpay/pki"
)

func TestCertificatePEM(t *testing.T) {
	h := newHierarchy(t, "Test")
	data := pki.EncodeCertificatesPEM(h.customer.Cert, h.root.Cert)
	certs, err := pki.DecodeCertificatesPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(h.customer.Cert) || !certs[1].Equal(h.root.Cert) {
		t.Fatalf("round trip gave %d certificates", len(certs))
	}
	one, err := pki.DecodeCertificatePEM(pki.EncodeCertificatesPEM(h.root.Cert))
	if err != nil || !one.Equal(h.root.Cert) {
		t.Fatalf("DecodeCertificatePEM = %v", err)
	}
	if _, err := pki.DecodeCertificatePEM(data); !errors.Is(err, pki.ErrPEM) {
		t.Errorf("two certificates for one: err = %v, want ErrPEM", err)
	}

	crlPEM := pki.EncodeCRLPEM(crl(t, h.customer, 1, t0))
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	for name, in := range map[string][]byte{
		"empty":        nil,
		"no PEM":       []byte("hello"),
		"CRL":          crlPEM,
		"private key":  keyPEM,
		"mixed":        append(bytes.Clone(data), keyPEM...),
		"truncated":    data[:len(data)-40],
		"bad DER":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}}),
		"with headers": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: h.root.Cert.Raw}),
	} {
		if _, err := pki.DecodeCertificatesPEM(in); !errors.Is(err, pki.ErrPEM) {
			t.Errorf("%s: err = %v, want ErrPEM", name, err)
		}
	}
}

func TestCRLPEM(t *testing.T) {
	h := newHierarchy(t, "Test")
	der := crl(t, h.customer, 3, t0)
	back, err := pki.DecodeCRLPEM(pki.EncodeCRLPEM(der))
	if err != nil || !bytes.Equal(back, der) {
		t.Fatalf("round trip: %v", err)
	}
	rootCRL := crl(t, h.root, 1, t0)
	both, err := pki.DecodeCRLsPEM(append(pki.EncodeCRLPEM(der), pki.EncodeCRLPEM(rootCRL)...))
	if err != nil || len(both) != 2 || !bytes.Equal(both[0], der) || !bytes.Equal(both[1], rootCRL) {
		t.Errorf("DecodeCRLsPEM: %d CRLs, %v", len(both), err)
	}
	for name, in := range map[string][]byte{
		"certificate": pki.EncodeCertificatesPEM(h.root.Cert),
		"two CRLs":    append(pki.EncodeCRLPEM(der), pki.EncodeCRLPEM(der)...),
		"bad DER":     pki.EncodeCRLPEM([]byte{0x30, 0x00}),
		"empty":       nil,
	} {
		if _, err := pki.DecodeCRLPEM(in); !errors.Is(err, pki.ErrPEM) {
			t.Errorf("%s: err = %v, want ErrPEM", name, err)
		}
	}
}

func TestExportChain(t *testing.T) {
	h := newHierarchy(t, "Test")
	dir := t.TempDir()
	files, err := pki.ExportChain(dir, h.root.Cert, h.customer.Cert, h.services.Cert)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]string{
		files.Root:    {h.root.Cert.Subject.CommonName},
		files.Issuing: {h.customer.Cert.Subject.CommonName, h.services.Cert.Subject.CommonName},
		files.Chain:   {h.customer.Cert.Subject.CommonName, h.services.Cert.Subject.CommonName, h.root.Cert.Subject.CommonName},
	} {
		if filepath.Dir(path) != dir {
			t.Errorf("%s written outside %s", path, dir)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := pki.DecodeCertificatesPEM(data)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range certs {
			got = append(got, c.Subject.CommonName)
		}
		if len(got) != len(want) {
			t.Errorf("%s holds %q, want %q", filepath.Base(path), got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s holds %q, want %q", filepath.Base(path), got, want)
			}
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v, %v", path, st.Mode(), err)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %q", leftovers)
	}

	other := newHierarchy(t, "Other")
	if _, err := pki.ExportChain(dir, h.root.Cert, other.customer.Cert); !errors.Is(err, pki.ErrNotCA) {
		t.Errorf("foreign issuing CA: err = %v, want ErrNotCA", err)
	}
	if _, err := pki.ExportChain(dir, h.customer.Cert, h.services.Cert); !errors.Is(err, pki.ErrNotCA) {
		t.Errorf("issuing CA as root: err = %v, want ErrNotCA", err)
	}
	leaf := issueCustomer(t, h.customer, "T1", t0.Add(time.Minute))
	if _, err := pki.ExportChain(dir, h.root.Cert, leaf); !errors.Is(err, pki.ErrNotCA) {
		t.Errorf("leaf as issuing CA: err = %v, want ErrNotCA", err)
	}
}
