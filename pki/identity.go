package pki

import (
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/gridpay/gridpay/internal/derrors"
)

// Kind is what a leaf certificate identifies.
type Kind int

const (
	KindUnknown  Kind = iota
	KindCustomer      // a customer's USB key
	KindService       // one of GridPay's own services, as a TLS client
	KindServer        // a GridPay TLS server (the gateway)
)

func (k Kind) String() string {
	switch k {
	case KindCustomer:
		return "customer"
	case KindService:
		return "service"
	case KindServer:
		return "server"
	default:
		return "unknown"
	}
}

// Identity is who a certificate speaks for.
type Identity struct {
	Kind        Kind
	CustomerID  string // KindCustomer
	TokenSerial string // KindCustomer
	Service     string // KindService
	// Server is the common name of a KindServer certificate. Host names are
	// matched by TLS against the certificate's DNS names, not against this.
	Server string
}

func (id Identity) String() string {
	switch id.Kind {
	case KindCustomer:
		return fmt.Sprintf("customer %s (token %s)", id.CustomerID, id.TokenSerial)
	case KindService:
		return "service " + id.Service
	case KindServer:
		return "server " + id.Server
	default:
		return "unknown identity"
	}
}

// IdentityOf reads the identity from a leaf certificate made by this
// package: the GridPay SAN URIs say who, and the subject (common name,
// serialNumber, organizational unit) and extended key usage must agree with
// them, so a certificate can never be read two ways. It does not verify the
// certificate; Verifier.Verify does, and calls this.
func IdentityOf(cert *x509.Certificate) (_ Identity, err error) {
	defer derrors.Wrap(&err, "IdentityOf(%s)", describeCert(cert))
	return identityOf(cert)
}

func identityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, withDetail(ErrBadCertificate, "no certificate")
	}
	if cert.IsCA {
		return Identity{}, withDetail(ErrBadCertificate, "a CA certificate identifies no one")
	}
	names := map[string][]string{}
	for _, u := range cert.URIs {
		kind, value, ok, err := parseGridPayURN(u)
		if err != nil {
			return Identity{}, err
		}
		if !ok {
			continue
		}
		switch kind {
		case urnCustomer, urnToken, urnService:
			names[kind] = append(names[kind], value)
		default:
			return Identity{}, withDetail(ErrBadCertificate, "unknown GridPay URN kind %q", clip(kind))
		}
	}
	subj := cert.Subject
	switch {
	case len(names) == 0:
		return serverIdentity(cert)
	case len(names[urnService]) > 0:
		if len(names) != 1 || len(names[urnService]) != 1 {
			return Identity{}, withDetail(ErrBadCertificate, "a service certificate must name exactly one service and nothing else")
		}
		name := names[urnService][0]
		if err := checkServiceName(name); err != nil {
			return Identity{}, withDetail(ErrBadCertificate, "%v", err)
		}
		if subj.CommonName != name || !slices.Equal(subj.OrganizationalUnit, []string{OUService}) {
			return Identity{}, withDetail(ErrBadCertificate, "subject %s does not match service %q", subj, name)
		}
		if !hasEKU(cert, x509.ExtKeyUsageClientAuth) {
			return Identity{}, withDetail(ErrBadCertificate, "service certificate without client authentication usage")
		}
		return Identity{Kind: KindService, Service: name}, nil
	default:
		if len(names[urnCustomer]) != 1 || len(names[urnToken]) != 1 {
			return Identity{}, withDetail(ErrBadCertificate, "a customer certificate must name exactly one customer and one token")
		}
		id, token := names[urnCustomer][0], names[urnToken][0]
		if err := checkCustomerID(id); err != nil {
			return Identity{}, withDetail(ErrBadCertificate, "%v", err)
		}
		if err := checkTokenSerial(token); err != nil {
			return Identity{}, withDetail(ErrBadCertificate, "%v", err)
		}
		if subj.CommonName != id || subj.SerialNumber != token ||
			!slices.Equal(subj.OrganizationalUnit, []string{OUCustomer}) {
			return Identity{}, withDetail(ErrBadCertificate, "subject %s does not match customer %q token %q", subj, id, token)
		}
		if !hasEKU(cert, x509.ExtKeyUsageClientAuth) {
			return Identity{}, withDetail(ErrBadCertificate, "customer certificate without client authentication usage")
		}
		return Identity{Kind: KindCustomer, CustomerID: id, TokenSerial: token}, nil
	}
}

func serverIdentity(cert *x509.Certificate) (Identity, error) {
	if !slices.Equal(cert.Subject.OrganizationalUnit, []string{OUServer}) {
		return Identity{}, withDetail(ErrBadCertificate, "no GridPay identity in the certificate")
	}
	if len(cert.DNSNames) == 0 && len(cert.IPAddresses) == 0 {
		return Identity{}, withDetail(ErrBadCertificate, "server certificate without DNS names or IP addresses")
	}
	if !hasEKU(cert, x509.ExtKeyUsageServerAuth) {
		return Identity{}, withDetail(ErrBadCertificate, "server certificate without server authentication usage")
	}
	return Identity{Kind: KindServer, Server: cert.Subject.CommonName}, nil
}

func hasEKU(cert *x509.Certificate, want x509.ExtKeyUsage) bool {
	return slices.Contains(cert.ExtKeyUsage, want)
}
