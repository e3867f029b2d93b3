package authority

import (
	"context"
	"os"
	"path/filepath"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/store"
)

// Files lists what Export wrote.
type Files struct {
	Dir        string `json:"dir"`
	Root       string `json:"root"`        // root.pem
	Issuing    string `json:"issuing"`     // issuing.pem: both issuing CAs
	Chain      string `json:"chain"`       // chain.pem: issuing CAs then root
	CustomerCA string `json:"customer_ca"` // customer-ca.pem
	ServicesCA string `json:"services_ca"` // services-ca.pem
	// CRLs are <ca>.crl (DER) for root, customer and services.
	CRLs []string `json:"crls"`
}

// Export writes the CA certificates and the latest CRLs into the configured
// directory, each file replaced atomically.
func (a *Authority) Export(ctx context.Context) (_ Files, err error) {
	defer derrors.Wrap(&err, "authority.Export(%q)", a.opts.Dir)
	if a.opts.Dir == "" {
		return Files{}, nil
	}
	if err := os.MkdirAll(a.opts.Dir, 0o755); err != nil {
		return Files{}, err
	}
	chain, err := pki.ExportChain(a.opts.Dir, a.Root.Cert, a.Customer.Cert, a.Services.Cert)
	if err != nil {
		return Files{}, err
	}
	f := Files{Dir: a.opts.Dir, Root: chain.Root, Issuing: chain.Issuing, Chain: chain.Chain,
		CustomerCA: filepath.Join(a.opts.Dir, "customer-ca.pem"),
		ServicesCA: filepath.Join(a.opts.Dir, "services-ca.pem")}
	if err := writeAtomic(f.CustomerCA, pki.EncodeCertificatesPEM(a.Customer.Cert)); err != nil {
		return Files{}, err
	}
	if err := writeAtomic(f.ServicesCA, pki.EncodeCertificatesPEM(a.Services.Cert)); err != nil {
		return Files{}, err
	}
	for _, s := range a.slots() {
		c, err := store.LatestCRL(ctx, a.db, IssuerID((*s.ca).Cert))
		if err != nil {
			return Files{}, err
		}
		if err := a.exportCRL(s.name, c.DER); err != nil {
			return Files{}, err
		}
		f.CRLs = append(f.CRLs, filepath.Join(a.opts.Dir, s.name+".crl"))
	}
	return f, nil
}

func (a *Authority) exportCRL(name string, der []byte) error {
	if a.opts.Dir == "" {
		return nil
	}
	if err := os.MkdirAll(a.opts.Dir, 0o755); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(a.opts.Dir, name+".crl"), der)
}

// writeAtomic writes through a temporary file and a rename, so a web server
// publishing the directory never serves half a file.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
