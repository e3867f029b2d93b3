package pki

import (
	"net/url"
	"strings"
)

// Limits on identifiers. They are far above real values (platform customer
// numbers are about a dozen characters, PKCS#11 token serials 16) and keep
// certificates and error messages small.
const (
	maxIDLen       = 64
	maxCommonName  = 64 // RFC 5280 ub-common-name
	maxDNSNameLen  = 253
	maxDNSLabelLen = 63
)

// URN prefixes of the SAN URIs that carry GridPay identities.
const (
	urnPrefix   = "urn:gridpay:"
	urnCustomer = "customer"
	urnToken    = "token"
	urnService  = "service"
)

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// checkIdent checks an identifier that ends up in a subject name and a URN.
// Keeping to letters, digits and a few separators means the value needs no
// escaping anywhere ('/', ':', spaces and control characters are out), so
// the URN and the subject can be compared byte for byte.
func checkIdent(field, v string, extra string) error {
	if v == "" {
		return fieldError(field, v, "must not be empty")
	}
	if len(v) > maxIDLen {
		return fieldError(field, v, "longer than %d characters", maxIDLen)
	}
	if !isAlnum(v[0]) {
		return fieldError(field, v, "must start with a letter or digit")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if isAlnum(c) || strings.IndexByte(extra, c) >= 0 {
			continue
		}
		return fieldError(field, v, "character %q at position %d not allowed (allowed: letters, digits and %q)", c, i+1, extra)
	}
	return nil
}

// checkCustomerID checks a platform customer number.
func checkCustomerID(v string) error { return checkIdent("CustomerID", v, "._-") }

// checkTokenSerial checks a USB key serial number. The value goes into the
// subject's serialNumber attribute, which X.520 types as PrintableString, a
// set without '_'. PKCS#11 pads serials with spaces: trim them first.
func checkTokenSerial(v string) error { return checkIdent("TokenSerial", v, ".-") }

// checkServiceName checks the name of one of GridPay's own services.
// Lower case only, so that "Gateway" and "gateway" cannot be two services.
func checkServiceName(v string) error {
	if err := checkIdent("Name", v, "-"); err != nil {
		return err
	}
	for i := 0; i < len(v); i++ {
		if 'A' <= v[i] && v[i] <= 'Z' {
			return fieldError("Name", v, "must be lower case")
		}
	}
	return nil
}

// checkText checks a free-text name attribute such as a CA common name.
func checkText(field, v string, required bool, max int) error {
	if v == "" {
		if required {
			return fieldError(field, v, "must not be empty")
		}
		return nil
	}
	if len(v) > max {
		return fieldError(field, v, "longer than %d characters", max)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return fieldError(field, v, "only printable ASCII is allowed")
		}
	}
	if strings.TrimSpace(v) != v {
		return fieldError(field, v, "must not start or end with a space")
	}
	return nil
}

func checkCountry(v string) error {
	if v == "" {
		return nil
	}
	if len(v) != 2 || v[0] < 'A' || v[0] > 'Z' || v[1] < 'A' || v[1] > 'Z' {
		return fieldError("Country", v, "must be a two-letter upper-case ISO 3166 code")
	}
	return nil
}

// checkDNSName checks a host name for a server certificate. Wildcards are
// refused: each GridPay host gets its own certificate.
func checkDNSName(v string) error {
	if v == "" {
		return fieldError("DNSNames", v, "must not be empty")
	}
	if len(v) > maxDNSNameLen {
		return fieldError("DNSNames", v, "longer than %d characters", maxDNSNameLen)
	}
	for _, label := range strings.Split(v, ".") {
		if label == "" || len(label) > maxDNSLabelLen {
			return fieldError("DNSNames", v, "labels must be 1 to %d characters", maxDNSLabelLen)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fieldError("DNSNames", v, "labels must not start or end with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' {
				continue
			}
			return fieldError("DNSNames", v, "character %q not allowed (lower-case letters, digits, '-' and '.')", c)
		}
	}
	return nil
}

// gridpayURN builds urn:gridpay:<kind>:<value> for a value already checked
// by one of the check functions, so it needs no escaping.
func gridpayURN(kind, value string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: "gridpay:" + kind + ":" + value}
}

// parseGridPayURN splits a SAN URI of the form urn:gridpay:<kind>:<value>.
// ok is false for URIs of other namespaces, which GridPay ignores. The value
// is returned unchecked.
func parseGridPayURN(u *url.URL) (kind, value string, ok bool, err error) {
	s := u.String()
	// RFC 8141: the "urn" scheme and the namespace identifier are
	// case-insensitive; the rest is ours and compared exactly.
	if len(s) < len(urnPrefix) || !strings.EqualFold(s[:len(urnPrefix)], urnPrefix) {
		return "", "", false, nil
	}
	kind, value, found := strings.Cut(s[len(urnPrefix):], ":")
	if !found {
		return "", "", true, withDetail(ErrBadCertificate, "malformed GridPay URN %q", clip(s))
	}
	return kind, value, true, nil
}
