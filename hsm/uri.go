package hsm

import (
	"fmt"
	"strings"
)

// URI is a PKCS#11 URI (RFC 7512) naming a token and an object on it, and
// where to find the module and the PIN:
//
//	pkcs11:token=GridPay%20HSM;object=ca-root;id=%01%02?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/gridpay/hsm.pin
//
// Only the attributes below are accepted; any other (including pin-value:
// PINs do not belong in configuration) is an error naming it.
type URI struct {
	// Path attributes.
	Token        string // token: CK_TOKEN_INFO label
	Manufacturer string // manufacturer: CK_TOKEN_INFO manufacturerID
	Model        string // model: CK_TOKEN_INFO model
	Serial       string // serial: CK_TOKEN_INFO serialNumber
	Object       string // object: CKA_LABEL
	ID           []byte // id: CKA_ID
	Type         string // type: cert, data, private, public or secret-key

	// Query attributes.
	ModulePath string    // module-path
	PINSource  PINSource // pin-source: file:/path, env:NAME or prompt
}

var uriTypes = map[string]bool{"cert": true, "data": true, "private": true, "public": true, "secret-key": true}

// ParseURI parses a PKCS#11 URI.
func ParseURI(s string) (*URI, error) {
	const scheme = "pkcs11:"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, fmt.Errorf("hsm: PKCS#11 URI %q: must start with %q", s, scheme)
	}
	path, query, _ := strings.Cut(s[len(scheme):], "?")
	u := &URI{}
	seen := map[string]bool{}
	for attr := range strings.SplitSeq(path, ";") {
		if attr == "" {
			continue // "pkcs11:" alone, or a trailing ";"
		}
		name, raw, ok := strings.Cut(attr, "=")
		if !ok {
			return nil, fmt.Errorf("hsm: PKCS#11 URI: path attribute %q has no value", attr)
		}
		if seen[name] {
			return nil, fmt.Errorf("hsm: PKCS#11 URI: attribute %q given twice", name)
		}
		seen[name] = true
		val, err := pctDecode(raw, isPathChar)
		if err != nil {
			return nil, fmt.Errorf("hsm: PKCS#11 URI: attribute %q: %w", name, err)
		}
		switch name {
		case "token":
			u.Token = string(val)
		case "manufacturer":
			u.Manufacturer = string(val)
		case "model":
			u.Model = string(val)
		case "serial":
			u.Serial = string(val)
		case "object":
			u.Object = string(val)
		case "id":
			u.ID = val
		case "type":
			if !uriTypes[string(val)] {
				return nil, fmt.Errorf("hsm: PKCS#11 URI: attribute \"type\": unknown type %q", val)
			}
			u.Type = string(val)
		default:
			return nil, fmt.Errorf("hsm: PKCS#11 URI: unsupported path attribute %q", name)
		}
	}
	if query != "" {
		for attr := range strings.SplitSeq(query, "&") {
			name, raw, ok := strings.Cut(attr, "=")
			if !ok {
				return nil, fmt.Errorf("hsm: PKCS#11 URI: query attribute %q has no value", attr)
			}
			if seen["?"+name] {
				return nil, fmt.Errorf("hsm: PKCS#11 URI: attribute %q given twice", name)
			}
			seen["?"+name] = true
			val, err := pctDecode(raw, isQueryChar)
			if err != nil {
				return nil, fmt.Errorf("hsm: PKCS#11 URI: attribute %q: %w", name, err)
			}
			switch name {
			case "module-path":
				u.ModulePath = string(val)
			case "pin-source":
				ps, err := ParsePINSource(string(val))
				if err != nil {
					return nil, fmt.Errorf("hsm: PKCS#11 URI: attribute \"pin-source\": %w", err)
				}
				u.PINSource = ps
			case "pin-value":
				return nil, fmt.Errorf("hsm: PKCS#11 URI: attribute \"pin-value\" is refused: put the PIN in a file and use pin-source")
			default:
				return nil, fmt.Errorf("hsm: PKCS#11 URI: unsupported query attribute %q", name)
			}
		}
	}
	return u, nil
}

// String formats u canonically: attributes in a fixed order (token,
// manufacturer, model, serial, object, id, type; module-path, pin-source),
// id fully percent-encoded, other values percent-encoded where RFC 7512
// requires it. ParseURI(u.String()) gives back u.
func (u *URI) String() string {
	var b strings.Builder
	b.WriteString("pkcs11:")
	n := 0
	add := func(name string, val []byte, keep func(byte) bool) {
		if len(val) == 0 {
			return
		}
		if n > 0 {
			b.WriteByte(';')
		}
		n++
		b.WriteString(name)
		b.WriteByte('=')
		pctEncode(&b, val, keep)
	}
	add("token", []byte(u.Token), isPathChar)
	add("manufacturer", []byte(u.Manufacturer), isPathChar)
	add("model", []byte(u.Model), isPathChar)
	add("serial", []byte(u.Serial), isPathChar)
	add("object", []byte(u.Object), isPathChar)
	add("id", u.ID, func(byte) bool { return false })
	add("type", []byte(u.Type), isPathChar)
	q := 0
	addQ := func(name, val string) {
		if val == "" {
			return
		}
		if q == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		q++
		b.WriteString(name)
		b.WriteByte('=')
		pctEncode(&b, []byte(val), isQueryChar)
	}
	addQ("module-path", u.ModulePath)
	addQ("pin-source", u.PINSource.String())
	return b.String()
}

// Selector selects the token the URI names.
func (u *URI) Selector() Selector { return Selector{Label: u.Token, Serial: u.Serial} }

// KeyRef names the object the URI names.
func (u *URI) KeyRef() KeyRef { return KeyRef{Label: u.Object, ID: u.ID} }

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isPathChar: RFC 7512 pk11-pchar without pct-encoded; ";" separates path
// attributes and "?" starts the query, so both must be encoded.
func isPathChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte(":[]@!$'()*+,=&", c) >= 0
}

// isQueryChar: RFC 7512 pk11-qchar without pct-encoded; "&" separates
// query attributes.
func isQueryChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte(":[]@!$'()*+,=/?|;", c) >= 0
}

func pctDecode(s string, allowed func(byte) bool) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("truncated percent-escape %q", s[i:])
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("bad percent-escape %q", s[i:i+3])
			}
			out = append(out, hi<<4|lo)
			i += 2
		case allowed(c):
			out = append(out, c)
		default:
			return nil, fmt.Errorf("character %q must be percent-encoded", c)
		}
	}
	return out, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func pctEncode(b *strings.Builder, val []byte, keep func(byte) bool) {
	const hexdig = "0123456789ABCDEF"
	for _, c := range val {
		if keep(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
}
