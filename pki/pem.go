package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/gridpay/gridpay/internal/derrors"
)

// PEM block types, as OpenSSL writes them.
const (
	PEMCertificate = "CERTIFICATE"
	PEMCRL         = "X509 CRL"
)

// EncodeCertificatesPEM encodes certificates as consecutive PEM blocks.
func EncodeCertificatesPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		// Writing to a bytes.Buffer cannot fail.
		_ = pem.Encode(&b, &pem.Block{Type: PEMCertificate, Bytes: c.Raw})
	}
	return b.Bytes()
}

// DecodeCertificatesPEM decodes one or more CERTIFICATE blocks. Any other
// block type, an unparsable certificate, or leftover bytes that are not
// blank are errors: a truncated file must not pass for a shorter chain.
func DecodeCertificatesPEM(data []byte) (_ []*x509.Certificate, err error) {
	defer derrors.Wrap(&err, "DecodeCertificatesPEM")
	blocks, err := decodePEM(data, PEMCertificate)
	if err != nil {
		return nil, err
	}
	certs := make([]*x509.Certificate, 0, len(blocks))
	for i, der := range blocks {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%w: block %d: %v", ErrPEM, i+1, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// DecodeCertificatePEM decodes exactly one certificate.
func DecodeCertificatePEM(data []byte) (_ *x509.Certificate, err error) {
	certs, err := DecodeCertificatesPEM(data)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("DecodeCertificatePEM: %w: %d certificates, want exactly one", ErrPEM, len(certs))
	}
	return certs[0], nil
}

// EncodeCRLPEM wraps a DER CRL in an "X509 CRL" PEM block.
func EncodeCRLPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: PEMCRL, Bytes: der})
}

// DecodeCRLsPEM returns the DER of each CRL in data (a file may bundle the
// root's and the issuing CAs' CRLs), after checking that each parses. It
// does not check signatures; Verifier.UpdateCRL does.
func DecodeCRLsPEM(data []byte) (_ [][]byte, err error) {
	defer derrors.Wrap(&err, "DecodeCRLsPEM")
	blocks, err := decodePEM(data, PEMCRL)
	if err != nil {
		return nil, err
	}
	for i, der := range blocks {
		if _, err := x509.ParseRevocationList(der); err != nil {
			return nil, fmt.Errorf("%w: block %d: %v", ErrPEM, i+1, err)
		}
	}
	return blocks, nil
}

// DecodeCRLPEM returns the DER of the single CRL in data.
func DecodeCRLPEM(data []byte) (_ []byte, err error) {
	crls, err := DecodeCRLsPEM(data)
	if err != nil {
		return nil, err
	}
	if len(crls) != 1 {
		return nil, fmt.Errorf("DecodeCRLPEM: %w: %d CRLs, want exactly one", ErrPEM, len(crls))
	}
	return crls[0], nil
}

func decodePEM(data []byte, wantType string) ([][]byte, error) {
	var out [][]byte
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != wantType {
			return nil, fmt.Errorf("%w: found a %q block, want %q", ErrPEM, clip(b.Type), wantType)
		}
		if len(b.Headers) > 0 {
			// Headers mean an encrypted or otherwise processed block.
			return nil, fmt.Errorf("%w: %q block has headers", ErrPEM, wantType)
		}
		out = append(out, b.Bytes)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: no %q block found", ErrPEM, wantType)
		}
		return nil, fmt.Errorf("%w: unreadable data after block %d", ErrPEM, len(out))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no %q block found", ErrPEM, wantType)
	}
	return out, nil
}

// ChainPEM returns the bundle a relying party needs to check GridPay
// certificates: the issuing CAs first, then the root.
func ChainPEM(root *x509.Certificate, issuing ...*x509.Certificate) []byte {
	return EncodeCertificatesPEM(append(slices.Clone(issuing), root)...)
}

// ChainFiles are the files ExportChain writes.
type ChainFiles struct {
	Root    string // the root alone: the trust anchor (openssl -CAfile)
	Issuing string // the issuing CAs (openssl -untrusted)
	Chain   string // issuing CAs then root, in one bundle
}

// Names of the files ExportChain writes.
const (
	RootFile    = "root.pem"
	IssuingFile = "issuing.pem"
	ChainFile   = "chain.pem"
)

// ExportChain writes the CA certificates as PEM files into dir for external
// tools such as openssl: root.pem, issuing.pem and chain.pem. It refuses an
// issuing CA the root did not sign, so the files always form a chain. Each
// file is replaced atomically.
func ExportChain(dir string, root *x509.Certificate, issuing ...*x509.Certificate) (_ ChainFiles, err error) {
	defer derrors.Wrap(&err, "ExportChain(%q)", dir)
	if RoleOf(root) != RoleRoot {
		return ChainFiles{}, fmt.Errorf("%w: %s is not a root CA", ErrNotCA, describeCert(root))
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return ChainFiles{}, fmt.Errorf("%w: root %s is not validly self-signed: %v", ErrNotCA, describeCert(root), err)
	}
	if len(issuing) == 0 {
		return ChainFiles{}, fmt.Errorf("%w: no issuing CA given", ErrNotCA)
	}
	for _, c := range issuing {
		if r := RoleOf(c); r != RoleCustomer && r != RoleServices {
			return ChainFiles{}, fmt.Errorf("%w: %s is not an issuing CA", ErrNotCA, describeCert(c))
		}
		if err := c.CheckSignatureFrom(root); err != nil {
			return ChainFiles{}, fmt.Errorf("%w: %s is not signed by %s: %v", ErrNotCA, describeCert(c), describeCert(root), err)
		}
	}
	files := ChainFiles{
		Root:    filepath.Join(dir, RootFile),
		Issuing: filepath.Join(dir, IssuingFile),
		Chain:   filepath.Join(dir, ChainFile),
	}
	if err := writeFileAtomic(files.Root, EncodeCertificatesPEM(root)); err != nil {
		return ChainFiles{}, err
	}
	if err := writeFileAtomic(files.Issuing, EncodeCertificatesPEM(issuing...)); err != nil {
		return ChainFiles{}, err
	}
	if err := writeFileAtomic(files.Chain, ChainPEM(root, issuing...)); err != nil {
		return ChainFiles{}, err
	}
	return files, nil
}

// writeFileAtomic writes through a temporary file and a rename, so that a
// reader (a web server publishing the chain) never sees half a file.
func writeFileAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	// Certificates are public; other tools and users must read them.
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
