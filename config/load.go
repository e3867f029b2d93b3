package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix is the prefix of every environment variable GridPay reads.
const EnvPrefix = "GRIDPAY"

// Validator is a configuration that can check itself.
type Validator interface {
	Validate() error
}

// Source says where to load from, beyond the built-in defaults.
type Source struct {
	// File is a YAML file; empty means none.
	File string
	// Flags are command-line flags; Bind maps a flag name to the key it sets
	// (for example "temporal-address" → "temporal.address"). Only flags the
	// user actually set override other sources.
	Flags *pflag.FlagSet
	Bind  map[string]string
}

// Load fills a configuration of type T, starting from defaults, then the
// file, the environment and the flags, and validates it. Unknown keys in the
// file, values that do not parse and failed checks are errors naming the key.
func Load[T Validator](defaults T, src Source) (T, error) {
	var zero T
	v := viper.New()
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	// Register every key with its default so the environment can override
	// keys the file does not mention (viper only consults the environment for
	// keys it knows).
	leaves, secrets, err := flatten(defaults)
	if err != nil {
		return zero, err
	}
	for k, val := range leaves {
		v.SetDefault(k, val)
	}

	if src.File != "" {
		v.SetConfigFile(src.File)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return zero, fmt.Errorf("reading config file %s: %w", src.File, err)
		}
		if err := checkFileKeys(src.File, leaves, secrets); err != nil {
			return zero, err
		}
	}
	for name, key := range src.Bind {
		if src.Flags == nil {
			break
		}
		f := src.Flags.Lookup(name)
		if f == nil {
			return zero, fmt.Errorf("config: flag --%s bound to %s is not defined", name, key)
		}
		if err := v.BindPFlag(key, f); err != nil {
			return zero, fmt.Errorf("config: binding --%s: %w", name, err)
		}
	}

	out := defaults
	// Unknown keys were refused above; a shared file may carry the keys of
	// GridPay's other programs, which this one ignores.
	err = v.Unmarshal(&out, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		return zero, decodeError(err)
	}
	if err := out.Validate(); err != nil {
		return zero, err
	}
	return out, nil
}

// decodeError rewrites mapstructure's message so it starts with the key.
// "'hsm' has invalid keys: modul, pinn" becomes "hsm.modul: unknown key;
// hsm.pinn: unknown key".
func decodeError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "decoding failed due to the following error(s):\n\n")
	var parts []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m := invalidKeys.FindStringSubmatch(line); m != nil {
			for _, k := range strings.Split(m[2], ", ") {
				parts = append(parts, joinKey(m[1], k)+": unknown key")
			}
			continue
		}
		parts = append(parts, line)
	}
	return fmt.Errorf("invalid configuration: %s", strings.Join(parts, "; "))
}

var invalidKeys = regexp.MustCompile(`^'([^']*)' has invalid keys: (.+)$`)

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// checkFileKeys refuses a file with a key no GridPay server program knows
// (a typo: "hsm.modul"), and one that writes a secret's value where only its
// source may go (hsm.pin: "1234" instead of hsm.pin.file). Keys of the other
// server programs are allowed, so one file can serve the whole stack.
func checkFileKeys(file string, own map[string]any, secrets []string) error {
	fv := viper.New()
	fv.SetConfigFile(file)
	fv.SetConfigType("yaml")
	if err := fv.ReadInConfig(); err != nil {
		return fmt.Errorf("reading config file %s: %w", file, err)
	}
	var errs Errors
	known := knownKeys()
	for _, key := range fv.AllKeys() {
		if _, ok := own[key]; ok || known[key] || isUnder(key, secrets) {
			continue
		}
		errs = append(errs, FieldError{Key: key, Problem: "unknown key"})
	}
	for _, key := range secrets {
		if raw := fv.Get(key); raw != nil {
			if _, isMap := raw.(map[string]any); !isMap {
				errs = append(errs, FieldError{Key: key, Problem: fmt.Sprintf(
					"a secret may not be written in the config file; set %s.file or the environment variable %s_%s",
					key, EnvPrefix, strings.ToUpper(strings.ReplaceAll(key, ".", "_")))})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// knownKeys is every key of GridPay's server programs (one file may
// configure them all).
func knownKeys() map[string]bool {
	out := map[string]bool{}
	for _, cfg := range []any{DefaultWorker(), DefaultAdmin(), DefaultGateway()} {
		leaves, _, err := flatten(cfg)
		if err != nil {
			panic(err) // the defaults are ours: a missing tag is a bug
		}
		for k := range leaves {
			out[k] = true
		}
	}
	return out
}

// isUnder reports whether key is one of the secret keys themselves (their
// inline values are refused separately, with a better message).
func isUnder(key string, secrets []string) bool {
	for _, s := range secrets {
		if key == s {
			return true
		}
	}
	return false
}

var (
	secretType   = reflect.TypeOf(Secret{})
	durationType = reflect.TypeOf(time.Duration(0))
)

// flatten lists every leaf key of a config struct with its default value, and
// the keys whose type is Secret.
func flatten(cfg any) (map[string]any, []string, error) {
	leaves := map[string]any{}
	var secrets []string
	var walk func(prefix string, v reflect.Value) error
	walk = func(prefix string, v reflect.Value) error {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("mapstructure")
			name, opts, _ := strings.Cut(tag, ",")
			fv := v.Field(i)
			if opts == "squash" {
				if err := walk(prefix, fv); err != nil {
					return err
				}
				continue
			}
			if name == "" {
				return fmt.Errorf("config: field %s.%s has no mapstructure tag", t.Name(), f.Name)
			}
			key := prefix + name
			switch {
			case f.Type == secretType:
				secrets = append(secrets, key)
				if err := walk(key+".", fv); err != nil {
					return err
				}
			case f.Type.Kind() == reflect.Struct && f.Type != durationType:
				if err := walk(key+".", fv); err != nil {
					return err
				}
			default:
				leaves[key] = fv.Interface()
			}
		}
		return nil
	}
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Struct {
		return nil, nil, errors.New("config: defaults must be a struct")
	}
	if err := walk("", v); err != nil {
		return nil, nil, err
	}
	return leaves, secrets, nil
}

// Redacted renders a configuration as indented JSON for printing. Secrets are
// only their sources; a password in a DSN is masked all the same.
func Redacted(cfg any) ([]byte, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if db, ok := m["database"].(map[string]any); ok {
		if dsn, ok := db["dsn"].(string); ok {
			db["dsn"] = redactDSN(dsn)
		}
	}
	return json.MarshalIndent(m, "", "  ")
}
