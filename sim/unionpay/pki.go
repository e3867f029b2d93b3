package simunionpay

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/pki"
	"github.com/gridpay/gridpay/unionpay"
)

// The simulator is UnionPay, not GridPay: it has its own root CA and
// gateway signing certificate, made on first start in the state directory.
// GridPay trusts the root (RootFileName) and checks each signPubKeyCert
// against it.
const (
	RootFileName    = "root.pem"     // the "UnionPay root" certificate, for GridPay to trust
	rootKeyFile     = "root-key.pem" // its private key (0600)
	gatewayCertFile = "gateway.pem"  // the gateway signing certificate
	gatewayKeyFile  = "gateway-key.pem"
	// MerchantsDir holds development merchant certificates (made by
	// NewMerchant or `unionpay-sim merchant-cert`); the simulator trusts
	// every certificate in it, for the merchant its subject CN names.
	MerchantsDir = "merchants"
)

// DefaultOrganization is the subject organisation of the gateway
// certificate, as the real one's.
const DefaultOrganization = "China UnionPay"

const (
	rootValidity     = 20 * 365 * 24 * time.Hour
	gatewayValidity  = 2 * 365 * 24 * time.Hour
	merchantValidity = 2 * 365 * 24 * time.Hour
	renewBefore      = 30 * 24 * time.Hour
	clockSkew        = 5 * time.Minute
)

// gatewayPKI is the simulator's root and signing key.
type gatewayPKI struct {
	root     *x509.Certificate
	rootKey  *rsa.PrivateKey
	cert     *x509.Certificate
	key      *rsa.PrivateKey
	certPEM  string // signPubKeyCert of every message
	rootFile string
}

// loadOrCreatePKI reuses the root and gateway certificate in dir, making
// what is missing, and reissues a gateway certificate that expires soon or
// names another organisation.
func loadOrCreatePKI(dir, org string, now time.Time, log *zap.Logger) (_ *gatewayPKI, err error) {
	defer derrors.Wrap(&err, "simunionpay.loadOrCreatePKI(%q)", dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	root, rootKey, err := loadOrCreateRoot(dir, now, log)
	if err != nil {
		return nil, err
	}
	p := &gatewayPKI{root: root, rootKey: rootKey, rootFile: filepath.Join(dir, RootFileName)}
	p.cert, p.key, err = loadPair(filepath.Join(dir, gatewayCertFile), filepath.Join(dir, gatewayKeyFile))
	if err == nil {
		err = checkGatewayCert(p.cert, root, org, now)
	}
	if err != nil {
		log.Info("issuing the gateway signing certificate", zap.String("reason", err.Error()))
		if p.cert, p.key, err = issueGatewayCert(dir, root, rootKey, org, now); err != nil {
			return nil, err
		}
	}
	p.certPEM = string(pki.EncodeCertificatesPEM(p.cert))
	return p, nil
}

func checkGatewayCert(cert, root *x509.Certificate, org string, now time.Time) error {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now.Add(renewBefore), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("the gateway certificate is not valid for another %v under the root: %w", renewBefore, err)
	}
	if !slices.Contains(cert.Subject.Organization, org) {
		return fmt.Errorf("the gateway certificate names %q, not %q", cert.Subject.Organization, org)
	}
	return nil
}

func loadOrCreateRoot(dir string, now time.Time, log *zap.Logger) (*x509.Certificate, *rsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, RootFileName), filepath.Join(dir, rootKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		cert, key, err := loadPair(certPath, keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("simulator root: %w", err)
		}
		if !cert.IsCA || now.After(cert.NotAfter) {
			return nil, nil, fmt.Errorf("simulator root %s is not a valid CA certificate (expired %s?); remove %s and %s to make a new one",
				certPath, cert.NotAfter.Format(time.DateOnly), certPath, keyPath)
		}
		return cert, key, nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	default:
		return nil, nil, fmt.Errorf("simulator root: %s and %s must both exist or both be missing", certPath, keyPath)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "UnionPay Root CA (simulated)", Organization: []string{DefaultOrganization}, Country: []string{"CN"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(rootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}
	cert, err := sign(tmpl, nil, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("simulator root: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(certPath, pki.EncodeCertificatesPEM(cert), 0o644); err != nil {
		return nil, nil, err
	}
	log.Info("created the simulator's UnionPay root", zap.String("root_file", certPath))
	return cert, key, nil
}

func issueGatewayCert(dir string, root *x509.Certificate, rootKey *rsa.PrivateKey, org string, now time.Time) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:   pkix.Name{CommonName: "UnionPay Gateway Signing (simulated)", Organization: []string{org}, Country: []string{"CN"}},
		NotBefore: now.Add(-clockSkew),
		NotAfter:  now.Add(gatewayValidity),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	cert, err := sign(tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway certificate: %w", err)
	}
	if err := writeKey(filepath.Join(dir, gatewayKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, gatewayCertFile), pki.EncodeCertificatesPEM(cert), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1)) // never zero
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func loadPair(certPath, keyPath string) (*x509.Certificate, *rsa.PrivateKey, error) {
	cert, err := unionpay.LoadCertificateFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	signer, err := unionpay.LoadKeyFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	key := signer.(*rsa.PrivateKey)
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
	}
	return cert, key, nil
}

func writeKey(path string, key *rsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFileAtomic writes through a temporary file and a rename, so that a
// crash never leaves half a key or certificate behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Merchant is a development merchant identity made by NewMerchant.
type Merchant struct {
	ID       string
	Key      *rsa.PrivateKey
	Cert     *x509.Certificate
	KeyFile  string // PEM, mode 0600 (unionpay.LoadKeyFile reads it)
	CertFile string
}

// NewMerchant makes a development merchant key (RSA-2048) and a
// certificate for merchant merID signed by the simulator's root in
// stateDir (creating the root if needed). It writes <outDir>/merchant-key.pem
// (0600) and <outDir>/merchant.pem, and a copy of the certificate into
// stateDir/merchants, which the simulator trusts at its next start (or at
// the first request naming the certificate's certId). The certificate's
// subject CN is the merchant ID.
func NewMerchant(stateDir, outDir, merID string, now time.Time) (_ *Merchant, err error) {
	defer derrors.Wrap(&err, "simunionpay.NewMerchant(%q)", merID)
	if err := unionpay.CheckMerchantID(merID); err != nil {
		return nil, err
	}
	if now.IsZero() {
		now = time.Now()
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	root, rootKey, err := loadOrCreateRoot(stateDir, now, zap.NewNop())
	if err != nil {
		return nil, err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	cert, err := sign(&x509.Certificate{
		Subject:   pkix.Name{CommonName: merID, Organization: []string{"Merchant " + merID + " (simulated)"}, Country: []string{"CN"}},
		NotBefore: now.Add(-clockSkew),
		NotAfter:  now.Add(merchantValidity),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}, root, &key.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return nil, err
	}
	m := &Merchant{ID: merID, Key: key, Cert: cert,
		KeyFile: filepath.Join(outDir, "merchant-key.pem"), CertFile: filepath.Join(outDir, "merchant.pem")}
	if err := writeKey(m.KeyFile, key); err != nil {
		return nil, err
	}
	certPEM := pki.EncodeCertificatesPEM(cert)
	if err := writeFileAtomic(m.CertFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	md := filepath.Join(stateDir, MerchantsDir)
	if err := os.MkdirAll(md, 0o700); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(md, merID+"-"+unionpay.CertID(cert)+".pem"), certPEM, 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

// MerchantCert is a merchant's signing certificate the simulator trusts:
// requests whose certId is the certificate's serial must come from
// MerchantID and verify with its key.
type MerchantCert struct {
	MerchantID string
	Cert       *x509.Certificate
}

// LoadMerchantCert reads a merchant certificate from "path" (the merchant
// ID is the subject CN) or "merId=path".
func LoadMerchantCert(spec string) (_ MerchantCert, err error) {
	defer derrors.Wrap(&err, "simunionpay.LoadMerchantCert(%q)", spec)
	merID, path, explicit := strings.Cut(spec, "=")
	if !explicit {
		path, merID = spec, ""
	}
	cert, err := unionpay.LoadCertificateFile(path)
	if err != nil {
		return MerchantCert{}, err
	}
	if merID == "" {
		merID = cert.Subject.CommonName
	}
	if err := unionpay.CheckMerchantID(merID); err != nil {
		return MerchantCert{}, fmt.Errorf("%w (give the merchant ID as merId=path)", err)
	}
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return MerchantCert{}, fmt.Errorf("the certificate's key is %T, not RSA", cert.PublicKey)
	}
	return MerchantCert{MerchantID: merID, Cert: cert}, nil
}

// merchantsInDir loads every certificate in stateDir/merchants.
func merchantsInDir(stateDir string) ([]MerchantCert, error) {
	paths, err := filepath.Glob(filepath.Join(stateDir, MerchantsDir, "*.pem"))
	if err != nil {
		return nil, err
	}
	var mcs []MerchantCert
	for _, p := range paths {
		mc, err := LoadMerchantCert(p)
		if err != nil {
			return nil, err
		}
		mcs = append(mcs, mc)
	}
	return mcs, nil
}
