package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// canonicalJSON re-encodes a JSON text under the rules documented on
// AuditHash.
func canonicalJSON(raw []byte) ([]byte, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := writeCanonical(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeJSON parses exactly one JSON value, keeping numbers as written.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

var integerRE = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

func writeCanonical(buf *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		if v {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case json.Number:
		s := string(v)
		if !integerRE.MatchString(s) {
			return fmt.Errorf("number %s is not an integer; write amounts as integer fen and anything else as a string", s)
		}
		if s == "-0" {
			s = "0"
		}
		buf.WriteString(s)
	case string:
		return writeCanonicalString(buf, v)
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		// Go compares strings bytewise, which for UTF-8 is code point
		// order.
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonicalString(buf, k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeCanonical(buf, v[k]); err != nil {
				return fmt.Errorf("%q: %w", k, err)
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("unexpected JSON value of type %T", v)
	}
	return nil
}

func writeCanonicalString(buf *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return errors.New("string is not valid UTF-8")
	}
	buf.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0:
			// jsonb cannot store U+0000.
			return errors.New("string contains U+0000")
		case c == '"' || c == '\\':
			buf.WriteByte('\\')
			buf.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(buf, `\u%04x`, c)
		default:
			buf.WriteByte(c)
		}
	}
	buf.WriteByte('"')
	return nil
}

// Words and adjacent word pairs of a detail key that mark it as naming a
// secret. Matching whole words keeps "shipping" or "mapping" from tripping
// over "pin".
var (
	secretWords = map[string]bool{
		"pin": true, "pins": true, "puk": true, "password": true, "passwd": true, "pwd": true,
		"passphrase": true, "secret": true, "otp": true,
		"pan": true, "cvv": true, "cvc": true, "cvn": true, "cvn2": true,
	}
	secretPairs = map[string]bool{
		"privatekey": true, "secretkey": true, "keymaterial": true,
		"cardnumber": true, "cardno": true, "accno": true, "accountnumber": true,
		"pinblock": true,
	}
)

// secretKey returns the first key, at any depth, that looks like it names a
// secret, or "".
func secretKey(v any) string {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if looksSecret(k) {
				return k
			}
			if s := secretKey(v[k]); s != "" {
				return k + "." + s
			}
		}
	case []any:
		for _, e := range v {
			if s := secretKey(e); s != "" {
				return s
			}
		}
	}
	return ""
}

func looksSecret(key string) bool {
	words := keyWords(key)
	for i, w := range words {
		if secretWords[w] {
			return true
		}
		if i > 0 && secretPairs[words[i-1]+w] {
			return true
		}
	}
	return secretPairs[strings.Join(words, "")]
}

// keyWords splits snake_case, kebab-case, camelCase and ACRONYMCase keys
// into lower-case words: "newPINBlock" → new, pin, block.
func keyWords(key string) []string {
	rs := []rune(key)
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		if unicode.IsUpper(r) && i > 0 {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return words
}
