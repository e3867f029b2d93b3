package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrSecretMissing means no source of a required secret is set.
var ErrSecretMissing = errors.New("secret not provided")

// Secret says where a secret value is kept: a file (preferred in production,
// for example a mounted Docker or Kubernetes secret) or an environment
// variable. It never holds the value itself, so a Secret can be printed,
// logged and marshalled without leaking anything.
type Secret struct {
	// File is the path of a file whose content (trailing newline removed) is
	// the secret. It must not be readable by others.
	File string `mapstructure:"file" json:"file,omitempty"`
	// Env is the name of the environment variable holding the secret, used
	// when File is empty.
	Env string `mapstructure:"env" json:"env,omitempty"`
}

// Provided reports whether a source of the secret is present right now.
func (s Secret) Provided() bool {
	if s.File != "" {
		return true
	}
	if s.Env != "" {
		v, ok := os.LookupEnv(s.Env)
		return ok && v != ""
	}
	return false
}

// Read returns the secret. key is the configuration key (e.g. "hsm.pin"),
// used only to make errors say which secret is missing. Callers should zero
// the returned slice when done with it.
func (s Secret) Read(key string) ([]byte, error) {
	if s.File != "" {
		fi, err := os.Stat(s.File)
		if err != nil {
			return nil, fmt.Errorf("%s.file: %w", key, err)
		}
		if fi.Mode().Perm()&0o004 != 0 {
			return nil, fmt.Errorf("%s.file: %s is readable by every user; chmod o-r it", key, s.File)
		}
		b, err := os.ReadFile(s.File)
		if err != nil {
			return nil, fmt.Errorf("%s.file: %w", key, err)
		}
		b = trimNewline(b)
		if len(b) == 0 {
			return nil, fmt.Errorf("%s.file: %s is empty", key, s.File)
		}
		return b, nil
	}
	if s.Env != "" {
		if v, ok := os.LookupEnv(s.Env); ok && v != "" {
			return []byte(v), nil
		}
	}
	return nil, fmt.Errorf("%s: %w: set %s.file to a file holding it%s", key, ErrSecretMissing, key, envHint(s.Env))
}

func envHint(env string) string {
	if env == "" {
		return ""
	}
	return " or the environment variable " + env
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// redactDSN removes a password from a postgres URL or key=value DSN, for
// printing.
func redactDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		scheme, rest, _ := strings.Cut(dsn, "://")
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			return dsn
		}
		userinfo := rest[:at]
		if user, _, ok := strings.Cut(userinfo, ":"); ok {
			return scheme + "://" + user + ":[redacted]" + rest[at:]
		}
		return dsn
	}
	fields := strings.Fields(dsn)
	for i, f := range fields {
		if k, _, ok := strings.Cut(f, "="); ok && k == "password" {
			fields[i] = "password=[redacted]"
		}
	}
	return strings.Join(fields, " ")
}

// dsnHasPassword reports whether a DSN carries a password inline.
func dsnHasPassword(dsn string) bool {
	return redactDSN(dsn) != dsn
}
