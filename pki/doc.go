// Package pki is GridPay's certificate authority: it issues certificates from
// CSRs, signs CRLs, and checks presented certificates against the chain and
// the CRLs. It uses only the standard library. Every private key it signs
// with is a crypto.Signer, normally backed by the HSM; it never sees key
// material.
//
// # Hierarchy
//
// Two tiers. The root CA is self-signed and long-lived; it signs only the
// issuing CAs and its own CRL, and its key stays offline in the HSM. Under
// it (path length 0) are two issuing CAs:
//
//   - the customer CA issues the client certificates on customers' USB keys;
//   - the services CA issues the gateway's TLS server certificate and the
//     client certificates GridPay's own services (gateway, worker) present
//     to the platform.
//
// The role of an issuing CA is written into its certificate as extended key
// usage (clientAuth for the customer CA; serverAuth and clientAuth for the
// services CA). Go and OpenSSL refuse a leaf whose purpose its CA does not
// allow, and this package tells the two issuing CAs apart by it (RoleOf): a
// CA only issues the kinds of certificate its role allows, and Verifier
// accepts a customer certificate only from the customer CA and a service or
// server certificate only from the services CA.
//
// # Certificate profiles
//
// The CAs:
//
//	                 Root CA                  Customer CA              Services CA
//	issued by        itself                   root                     root
//	subject          CN, O, C (C optional)    CN, O, C; O and C are    as the customer CA
//	                                          the root's unless given
//	basic constr.    CA, pathlen 1            CA, pathlen 0            CA, pathlen 0
//	key usage        certSign, cRLSign        certSign, cRLSign        certSign, cRLSign
//	ext. key usage   none                     clientAuth               serverAuth, clientAuth
//	default validity 20 years                 10 years                 10 years
//	key identifiers  SKI (AKI = SKI)          SKI, AKI                 SKI, AKI
//	CRL dist. point  none                     the root's CRLURL        the root's CRLURL
//
// The leaves:
//
//	                 Customer (USB key)              Server (gateway TLS)        Service (gateway, worker)
//	issued by        customer CA                     services CA                 services CA
//	subject          CN=<customer ID>                CN=<CommonName, else the    CN=<service name>
//	                 serialNumber=<token serial>        first DNS name or IP>    OU=Service
//	                 OU=Customer                     OU=Server                   O=<issuer's O>
//	                 O=<issuer's O>                  O=<issuer's O>
//	SAN              URI urn:gridpay:customer:<ID>   DNS names, IP addresses     URI urn:gridpay:service:<name>
//	                 URI urn:gridpay:token:<serial>  (at least one)
//	basic constr.    CA false                        CA false                    CA false
//	key usage        digitalSignature                digitalSignature            digitalSignature
//	ext. key usage   clientAuth                      serverAuth                  clientAuth
//	default validity 2 years                         1 year                      1 year
//	key identifiers  SKI, AKI                        SKI, AKI                    SKI, AKI
//	CRL dist. point  the customer CA's CRLURL        the services CA's CRLURL    the services CA's CRLURL
//
// serialNumber is the X.520 attribute 2.5.4.5 (PrintableString). The CRL
// distribution point is written only when the issuing CA's CRLURL is set.
//
// Common to all: serial numbers are 128 bits from crypto/rand with the top
// bit forced to 1 (always positive, never zero, always 17 bytes in DER,
// 127 random bits); NotBefore is the issuing time minus ClockSkew (5 minutes) so
// that slightly slow clocks accept a fresh certificate; NotAfter is the
// issuing time plus the validity, cut to the issuer's NotAfter; subject key
// identifiers are the truncated SHA-256 of the key (RFC 7093 method 1);
// keys are ECDSA P-256 or P-384, or RSA of 2048 to 8192 bits, for CAs and
// leaves alike.
//
// # Issuing from a CSR
//
// CA.IssueCustomer parses the CSR and checks its signature before using
// anything in it: the signature is the proof that the USB key holds the
// private key (ErrCSRSignature otherwise). Weak keys are refused
// (ErrWeakKey). The subject and names of the certificate are taken from the
// request (customer ID and token serial from the admin desk and the token),
// never copied from the CSR, and no CSR extension is honoured. A CSR may
// leave its subject empty; if it names a customer or token (common name,
// serialNumber attribute, or urn:gridpay SAN URIs), the names must be the
// requested ones (ErrCSRMismatch), which catches a CSR made on the wrong USB
// key. Identifiers are restricted to letters, digits and a few separators
// so they need no escaping in subjects or URNs and compare byte for byte.
//
// The server and service keys live in GridPay's own HSM, so IssueServer and
// IssueService take a public key; a CSR can be checked with CheckCSR first.
//
// # Revocation
//
// Revocation is permanent: GridPay issues no certificate holds. The admin
// desk's words map to RFC 5280 reasons (ParseReason): a lost key is
// keyCompromise, a returned key cessationOfOperation, a replaced key
// superseded. Each CA signs its own CRL (CA.CRL): the root's covers the
// issuing CAs, each issuing CA's covers its leaves. CRL numbers and the list
// of revocations are kept by the caller (the store).
//
// Verifier holds the trusted roots and issuing CAs and the current CRL of
// each. It fails closed: a missing CRL (ErrNoCRL) or one past its next
// update (ErrCRLStale) makes verification fail. UpdateCRL checks a new CRL's
// signature against the configured CA and refuses one older than the CRL in
// use, then swaps it in atomically.
//
// # Files
//
// ExportChain writes root.pem, issuing.pem and chain.pem for external tools,
// e.g.
//
//	openssl verify -CAfile root.pem -untrusted issuing.pem leaf.pem
//
// and the PEM helpers encode and decode certificates and CRLs.
package pki
