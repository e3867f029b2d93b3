package pki

import (
	"fmt"
	"strconv"
	"strings"
)

// Reason is an RFC 5280 CRLReason code (section 5.3.1).
type Reason int

// The RFC 5280 reason codes. Value 7 is not used by the RFC.
const (
	ReasonUnspecified          Reason = 0
	ReasonKeyCompromise        Reason = 1
	ReasonCACompromise         Reason = 2
	ReasonAffiliationChanged   Reason = 3
	ReasonSuperseded           Reason = 4
	ReasonCessationOfOperation Reason = 5
	ReasonCertificateHold      Reason = 6
	ReasonRemoveFromCRL        Reason = 8
	ReasonPrivilegeWithdrawn   Reason = 9
	ReasonAACompromise         Reason = 10
)

// reasonInfo describes one reason: its ASN.1 name from RFC 5280, the words
// shown to people, and the name used on command lines and in JSON.
type reasonInfo struct {
	asn1Name string
	text     string
	flag     string // empty: not accepted by ParseReason and not put in our CRLs
}

var reasons = map[Reason]reasonInfo{
	ReasonUnspecified:          {"unspecified", "unspecified", "unspecified"},
	ReasonKeyCompromise:        {"keyCompromise", "key compromise", "key-compromise"},
	ReasonCACompromise:         {"cACompromise", "CA compromise", "ca-compromise"},
	ReasonAffiliationChanged:   {"affiliationChanged", "affiliation changed", "affiliation-changed"},
	ReasonSuperseded:           {"superseded", "superseded", "superseded"},
	ReasonCessationOfOperation: {"cessationOfOperation", "cessation of operation", "cessation-of-operation"},
	// Holds are temporary revocations; GridPay never un-revokes, so it
	// neither issues holds nor the delta-CRL-only removeFromCRL.
	ReasonCertificateHold:    {"certificateHold", "certificate hold", ""},
	ReasonRemoveFromCRL:      {"removeFromCRL", "remove from CRL", ""},
	ReasonPrivilegeWithdrawn: {"privilegeWithdrawn", "privilege withdrawn", "privilege-withdrawn"},
	// Attribute authorities do not exist here.
	ReasonAACompromise: {"aACompromise", "AA compromise", ""},
}

// businessReasons are the words the admin desk uses for what happened to a
// USB key, mapped to the RFC reason a relying party understands. A lost key
// may be in someone else's hands, hence key compromise.
var businessReasons = []struct {
	word   string
	reason Reason
}{
	{"lost", ReasonKeyCompromise},
	{"returned", ReasonCessationOfOperation},
	{"replaced", ReasonSuperseded},
}

// allowedReasonNames lists what ParseReason accepts, for error messages.
var allowedReasonNames = func() string {
	var names []string
	for _, b := range businessReasons {
		names = append(names, b.word)
	}
	for r := ReasonUnspecified; r <= ReasonAACompromise; r++ {
		if info, ok := reasons[r]; ok && info.flag != "" {
			names = append(names, info.flag)
		}
	}
	return strings.Join(names, ", ")
}()

// ParseReason maps a reason given by a person or a command line to its code.
// It accepts the business words "lost" (key compromise), "returned"
// (cessation of operation) and "replaced" (superseded), and the RFC reasons
// in kebab case ("key-compromise", "ca-compromise", "affiliation-changed",
// "superseded", "cessation-of-operation", "privilege-withdrawn",
// "unspecified"). Case and surrounding spaces are ignored.
func ParseReason(s string) (Reason, error) {
	w := strings.ToLower(strings.TrimSpace(s))
	for _, b := range businessReasons {
		if w == b.word {
			return b.reason, nil
		}
	}
	for r, info := range reasons {
		if info.flag != "" && w == info.flag {
			return r, nil
		}
	}
	return 0, fmt.Errorf("%w %q (allowed: %s)", ErrUnknownReason, clip(s), allowedReasonNames)
}

// String returns the RFC 5280 ASN.1 name, e.g. "keyCompromise".
func (r Reason) String() string {
	if info, ok := reasons[r]; ok {
		return info.asn1Name
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Text returns the reason in words, e.g. "key compromise".
func (r Reason) Text() string {
	if info, ok := reasons[r]; ok {
		return info.text
	}
	return "reason code " + strconv.Itoa(int(r))
}

// Issuable reports whether GridPay puts this reason in a CRL.
func (r Reason) Issuable() bool {
	info, ok := reasons[r]
	return ok && info.flag != ""
}

// MarshalText encodes an issuable reason by its kebab-case name, so that
// JSON payloads stay readable and round-trip through ParseReason.
func (r Reason) MarshalText() ([]byte, error) {
	if !r.Issuable() {
		return nil, fmt.Errorf("%w: %s cannot be encoded", ErrUnknownReason, r)
	}
	return []byte(reasons[r].flag), nil
}

// UnmarshalText accepts everything ParseReason accepts.
func (r *Reason) UnmarshalText(b []byte) error {
	v, err := ParseReason(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
