package simplatform

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gridpay/gridpay/logging"
	"github.com/gridpay/gridpay/pki"
)

// The simulator is the power company's system, not GridPay's: it has its
// own CA, made on first start in the state directory. GridPay trusts that
// CA's certificate (CAFileName); the simulator trusts GridPay's services
// CA for its clients.
const (
	CAFileName     = "ca.pem"         // the simulator's CA certificate, for GridPay to trust
	caKeyFile      = "ca-key.pem"     // its private key (0600)
	serverCertFile = "server.pem"     // server certificate, then the CA certificate
	serverKeyFile  = "server-key.pem" // its private key (0600)
)

// Lifetimes of the simulator's certificates. The server certificate is
// renewed at start when less than renewBefore remains.
const (
	caValidity     = 10 * 365 * 24 * time.Hour
	serverValidity = 365 * 24 * time.Hour
	renewBefore    = 30 * 24 * time.Hour
	clockSkew      = 5 * time.Minute
)

// DefaultServerNames are the names the server certificate always covers.
var DefaultServerNames = []string{"localhost", "127.0.0.1", "::1"}

// serverPKI is the simulator's CA and server certificate.
type serverPKI struct {
	caCert *x509.Certificate
	cert   tls.Certificate
	caFile string
}

// loadOrCreatePKI reuses the CA and server certificate in dir, creating
// what is missing, and renews a server certificate that expires soon or
// lacks one of names.
func loadOrCreatePKI(dir string, names []string, now time.Time, log *zap.Logger) (*serverPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	caCert, caKey, err := loadOrCreateCA(dir, now, log)
	if err != nil {
		return nil, err
	}
	cert, err := loadServerCert(dir, caCert, names, now)
	if err != nil {
		log.Info("issuing the server certificate", zap.String("reason", err.Error()), zap.Strings("names", names))
		if cert, err = issueServerCert(dir, caCert, caKey, names, now); err != nil {
			return nil, err
		}
	}
	return &serverPKI{caCert: caCert, cert: cert, caFile: filepath.Join(dir, CAFileName)}, nil
}

func loadOrCreateCA(dir string, now time.Time, log *zap.Logger) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CAFileName), filepath.Join(dir, caKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		cert, key, err := loadPair(certPath, keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("simulator CA: %w", err)
		}
		if !cert.IsCA || now.After(cert.NotAfter) {
			return nil, nil, fmt.Errorf("simulator CA %s is not a valid CA certificate (expired %s?); remove %s and %s to make a new one",
				certPath, cert.NotAfter.Format(time.DateOnly), certPath, keyPath)
		}
		return cert, key, nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
	default:
		return nil, nil, fmt.Errorf("simulator CA: %s and %s must both exist or both be missing (%v, %v)", certPath, keyPath, certErr, keyErr)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Platform Simulator Root CA", Organization: []string{"Power Supply Company (simulated)"}, Country: []string{"CN"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	cert, err := sign(tmpl, nil, key, key)
	if err != nil {
		return nil, nil, fmt.Errorf("simulator CA: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writeFileAtomic(certPath, pki.EncodeCertificatesPEM(cert), 0o644); err != nil {
		return nil, nil, err
	}
	log.Info("created the simulator's CA", zap.String("ca_file", certPath), zap.Time("not_after", cert.NotAfter))
	return cert, key, nil
}

func loadServerCert(dir string, ca *x509.Certificate, names []string, now time.Time) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile)
	leaf, key, err := loadPair(certPath, keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now.Add(renewBefore), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return tls.Certificate{}, fmt.Errorf("the server certificate is not valid for another %v under the CA: %w", renewBefore, err)
	}
	for _, n := range names {
		if err := leaf.VerifyHostname(n); err != nil {
			return tls.Certificate{}, fmt.Errorf("the server certificate does not cover %s", n)
		}
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func issueServerCert(dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "platform-sim", Organization: ca.Subject.Organization},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(serverValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	leaf, err := sign(tmpl, ca, key, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
	}
	if err := writeKey(filepath.Join(dir, serverKeyFile), key); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFileAtomic(filepath.Join(dir, serverCertFile), pki.EncodeCertificatesPEM(leaf, ca), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// sign makes a certificate for key's public key, signed by parentKey
// (self-signed when parent is nil).
func sign(tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial.SetBit(serial, 127, 1) // always 128 bits, never zero
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	ski := sha256.Sum256(pub)
	tmpl.SubjectKeyId = ski[:20]
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// loadPair reads a certificate (the first of a PEM file) and its private
// key, refusing a key file that others can read.
func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	certs, err := pki.DecodeCertificatesPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, nil, fmt.Errorf("private key %s is accessible to other users (mode %v); chmod 600 it", keyPath, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, nil, fmt.Errorf("%s holds no PKCS #8 private key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(certs[0].PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
	}
	return certs[0], key, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFileAtomic writes through a temporary file created with perm, so a
// crash leaves the old file or the new one, and a key is never readable
// by others, not even for a moment.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
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
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
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

// ErrRefused marks the error with which the simulator refuses a TLS
// client during the handshake.
var ErrRefused = errors.New("platform-sim refused the client certificate")

// clientPolicy is the paper's firewall rule: only GridPay's services, by
// a certificate of GridPay's services CA naming an admitted service.
type clientPolicy struct {
	roots *x509.CertPool
	allow []string
	now   func() time.Time
}

// check verifies the client's chain and identity and returns who it is.
func (p clientPolicy) check(certs []*x509.Certificate) (pki.Identity, error) {
	if len(certs) == 0 {
		return pki.Identity{}, fmt.Errorf("%w: no client certificate", ErrRefused)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: p.roots, Intermediates: inter, CurrentTime: p.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return pki.Identity{}, fmt.Errorf("%w: not issued by the trusted client CA: %w", ErrRefused, err)
	}
	id, err := pki.IdentityOf(certs[0])
	if err != nil {
		return pki.Identity{}, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if id.Kind != pki.KindService {
		return id, fmt.Errorf("%w: %s is not a GridPay service", ErrRefused, id)
	}
	if !slices.Contains(p.allow, id.Service) {
		return id, fmt.Errorf("%w: service %q is not admitted (admitted: %s)", ErrRefused, id.Service, strings.Join(p.allow, ", "))
	}
	return id, nil
}

// serverTLSConfig requests a client certificate and checks it itself in
// VerifyConnection (instead of leaving the chain to crypto/tls), so that
// every refusal, a missing certificate included, goes through one place
// that logs it with the peer's address. A refusal aborts the handshake.
func serverTLSConfig(sp *serverPKI, policy clientPolicy, log *zap.Logger) (*tls.Config, error) {
	base := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{sp.cert},
		// Request, don't let crypto/tls decide: VerifyConnection does.
		ClientAuth: tls.RequestClientCert,
		// Advertised in the CertificateRequest, so clients holding several
		// certificates pick GridPay's.
		ClientCAs:  policy.roots,
		NextProtos: []string{"h2", "http/1.1"},
	}
	// Per-connection clones must share session ticket keys, or no session
	// could ever be resumed.
	var ticketKey [32]byte
	if _, err := rand.Read(ticketKey[:]); err != nil {
		return nil, err
	}
	base.SetSessionTicketKeys([][32]byte{ticketKey})

	outer := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: base.NextProtos,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			remote := hello.Conn.RemoteAddr().String()
			cfg := base.Clone()
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				id, err := policy.check(cs.PeerCertificates)
				if err != nil {
					fields := []zap.Field{zap.String("remote", remote), zap.String("reason", err.Error())}
					if len(cs.PeerCertificates) > 0 {
						c := cs.PeerCertificates[0]
						fields = append(fields, zap.String("subject", c.Subject.String()), zap.String("issuer", c.Issuer.String()),
							zap.String(logging.KeyCertSerial, pki.SerialHex(c.SerialNumber)))
					}
					log.Warn("refused TLS client", fields...)
					return err
				}
				log.Debug("accepted TLS client", zap.String("remote", remote), zap.String("service", id.Service), zap.Bool("resumed", cs.DidResume))
				return nil
			}
			return cfg, nil
		},
	}
	return outer, nil
}
