package pki

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/gridpay/gridpay/internal/derrors"
)

// MaxCSRSize bounds the CSR a caller may hand in. A CSR with an 8192-bit RSA
// key is under 2 KiB.
const MaxCSRSize = 16 << 10

// CheckCSR parses a DER certificate signing request and checks its
// self-signature, which proves that whoever made it holds the private key,
// and its key type and size. Nothing in the CSR is trusted before the
// signature is checked; only a key that could not be checked at all (an
// unsupported type) is refused first.
func CheckCSR(der []byte) (_ *x509.CertificateRequest, err error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadCSR)
	}
	if len(der) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes, more than the %d allowed", ErrBadCSR, len(der), MaxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: not a DER PKCS#10 request: %v", ErrBadCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCSRSignature, err)
	}
	return csr, nil
}

// CustomerRequest says whom a USB-key certificate is for.
type CustomerRequest struct {
	CustomerID  string        // platform customer number
	TokenSerial string        // the USB key's PKCS#11 serial, padding trimmed
	Validity    time.Duration // zero means DefaultCustomerValidity
	Now         time.Time     // zero means time.Now()
}

// IssueCustomer issues the client certificate of a customer's USB key from
// a CSR made on that key. The certificate's subject and names come from the
// request, never from the CSR; a CSR that names a customer or token (in its
// common name, serialNumber or GridPay SAN URIs) must name the requested
// ones, which catches a CSR made on the wrong USB key. Only a customer CA
// may issue these.
func (ca *CA) IssueCustomer(csrDER []byte, req CustomerRequest) (_ *x509.Certificate, err error) {
	defer derrors.Wrap(&err, "CA.IssueCustomer(customer %q, token %q)", clip(req.CustomerID), clip(req.TokenSerial))
	if err := ca.checkRole(RoleCustomer); err != nil {
		return nil, err
	}
	csr, err := CheckCSR(csrDER)
	if err != nil {
		return nil, err
	}
	if err := checkCustomerID(req.CustomerID); err != nil {
		return nil, err
	}
	if err := checkTokenSerial(req.TokenSerial); err != nil {
		return nil, err
	}
	validity, err := pickValidity(req.Validity, DefaultCustomerValidity)
	if err != nil {
		return nil, err
	}
	if err := matchCustomerCSR(csr, req); err != nil {
		return nil, err
	}
	if err := ca.notOwnKey(csr.PublicKey); err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:         req.CustomerID,
			Organization:       ca.Cert.Subject.Organization,
			OrganizationalUnit: []string{OUCustomer},
			SerialNumber:       req.TokenSerial,
		},
		URIs: []*url.URL{
			gridpayURN(urnCustomer, req.CustomerID),
			gridpayURN(urnToken, req.TokenSerial),
		},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	return ca.issue(tmpl, csr.PublicKey, validity, req.Now)
}

func matchCustomerCSR(csr *x509.CertificateRequest, req CustomerRequest) error {
	if cn := csr.Subject.CommonName; cn != "" && cn != req.CustomerID {
		return fmt.Errorf("%w: CSR is for customer %q, the request for %q", ErrCSRMismatch, clip(cn), req.CustomerID)
	}
	if sn := csr.Subject.SerialNumber; sn != "" && sn != req.TokenSerial {
		return fmt.Errorf("%w: CSR is for token %q, the request for %q", ErrCSRMismatch, clip(sn), req.TokenSerial)
	}
	for _, u := range csr.URIs {
		kind, value, ok, err := parseGridPayURN(u)
		if !ok {
			continue
		}
		if err != nil || !(kind == urnCustomer && value == req.CustomerID || kind == urnToken && value == req.TokenSerial) {
			return fmt.Errorf("%w: CSR asks for %q", ErrCSRMismatch, clip(u.String()))
		}
	}
	return nil
}

// notOwnKey refuses to certify the CA's own key for someone else: such a
// CSR can only come from a mix-up at the admin desk.
func (ca *CA) notOwnKey(pub crypto.PublicKey) error {
	if sameKey(ca.Cert.PublicKey, pub) {
		return fmt.Errorf("%w: the key is the CA's own", ErrBadCSR)
	}
	return nil
}

// ServerRequest describes a TLS server certificate (the gateway's).
type ServerRequest struct {
	CommonName  string // optional; empty means the first DNS name or IP
	DNSNames    []string
	IPAddresses []net.IP
	Validity    time.Duration // zero means DefaultServerValidity
	Now         time.Time     // zero means time.Now()
}

// IssueServer issues a TLS server certificate for pub. The key normally
// lives in the HSM and pub is read from there; if it comes as a CSR, pass it
// through CheckCSR first and use the CSR's public key. At least one DNS name
// or IP address is required: TLS clients match those, not the common name.
// Only the services CA may issue these.
func (ca *CA) IssueServer(pub crypto.PublicKey, req ServerRequest) (_ *x509.Certificate, err error) {
	defer derrors.Wrap(&err, "CA.IssueServer(%q)", req.DNSNames)
	if err := ca.checkRole(RoleServices); err != nil {
		return nil, err
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	if err := ca.notOwnKey(pub); err != nil {
		return nil, err
	}
	if len(req.DNSNames) == 0 && len(req.IPAddresses) == 0 {
		return nil, fieldError("DNSNames", "", "at least one DNS name or IP address is required")
	}
	for _, name := range req.DNSNames {
		if err := checkDNSName(name); err != nil {
			return nil, err
		}
	}
	for _, ip := range req.IPAddresses {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return nil, fieldError("IPAddresses", ip.String(), "not an IP address")
		}
	}
	cn := req.CommonName
	if cn == "" {
		if len(req.DNSNames) > 0 {
			cn = req.DNSNames[0]
		} else {
			cn = req.IPAddresses[0].String()
		}
	}
	if err := checkText("CommonName", cn, true, maxCommonName); err != nil {
		return nil, err
	}
	validity, err := pickValidity(req.Validity, DefaultServerValidity)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:         cn,
			Organization:       ca.Cert.Subject.Organization,
			OrganizationalUnit: []string{OUServer},
		},
		DNSNames:    req.DNSNames,
		IPAddresses: req.IPAddresses,
		// TLS 1.3 only: the key signs the handshake and never decrypts a
		// key exchange, so no keyEncipherment even for RSA.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	return ca.issue(tmpl, pub, validity, req.Now)
}

// ServiceRequest describes the client certificate of one of GridPay's own
// services (gateway, worker) towards the platform.
type ServiceRequest struct {
	Name     string        // lower case letters, digits and '-', e.g. "worker"
	Validity time.Duration // zero means DefaultServiceValidity
	Now      time.Time     // zero means time.Now()
}

// IssueService issues a service's client certificate for pub (see
// IssueServer about CSRs). Only the services CA may issue these.
func (ca *CA) IssueService(pub crypto.PublicKey, req ServiceRequest) (_ *x509.Certificate, err error) {
	defer derrors.Wrap(&err, "CA.IssueService(%q)", clip(req.Name))
	if err := ca.checkRole(RoleServices); err != nil {
		return nil, err
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	if err := ca.notOwnKey(pub); err != nil {
		return nil, err
	}
	if err := checkServiceName(req.Name); err != nil {
		return nil, err
	}
	validity, err := pickValidity(req.Validity, DefaultServiceValidity)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:         req.Name,
			Organization:       ca.Cert.Subject.Organization,
			OrganizationalUnit: []string{OUService},
		},
		URIs:                  []*url.URL{gridpayURN(urnService, req.Name)},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	return ca.issue(tmpl, pub, validity, req.Now)
}
