package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gridpay.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	if err := DefaultWorker().Validate(); err != nil {
		t.Fatalf("worker defaults: %v", err)
	}
	if err := DefaultAdmin().Validate(); err != nil {
		t.Fatalf("admin defaults: %v", err)
	}
	if err := DefaultGateway().Validate(); err != nil {
		t.Fatalf("gateway defaults: %v", err)
	}
	if err := DefaultClient().Validate(); err != nil {
		t.Fatalf("client defaults: %v", err)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	file := writeFile(t, `
temporal:
  address: file-host:7233
  namespace: from-file
hsm:
  sessions: 3
pki:
  customer_validity: 720h
`)
	t.Setenv("GRIDPAY_TEMPORAL_NAMESPACE", "from-env")
	t.Setenv("GRIDPAY_LOG_LEVEL", "debug")
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("temporal-address", "", "")
	if err := fs.Parse([]string{"--temporal-address=flag-host:7000"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(DefaultWorker(), Source{File: file, Flags: fs, Bind: map[string]string{"temporal-address": "temporal.address"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Temporal.Address != "flag-host:7000" {
		t.Errorf("flag should win over file: got %q", cfg.Temporal.Address)
	}
	if cfg.Temporal.Namespace != "from-env" {
		t.Errorf("env should win over file: got %q", cfg.Temporal.Namespace)
	}
	if cfg.Log.Level != "debug" {
		t.Errorf("env should set a key absent from the file: got %q", cfg.Log.Level)
	}
	if cfg.HSM.Sessions != 3 || cfg.PKI.CustomerValidity != 720*time.Hour {
		t.Errorf("file values not applied: sessions=%d validity=%s", cfg.HSM.Sessions, cfg.PKI.CustomerValidity)
	}
	if cfg.Temporal.TaskQueue != "gridpay" {
		t.Errorf("default lost: task_queue=%q", cfg.Temporal.TaskQueue)
	}
}

func TestMissingRequiredKeyIsNamed(t *testing.T) {
	file := writeFile(t, "temporal:\n  task_queue: \"\"\n")
	_, err := Load(DefaultWorker(), Source{File: file})
	var fe Errors
	if !errors.As(err, &fe) {
		t.Fatalf("want config.Errors, got %v", err)
	}
	if len(fe) != 1 || fe[0].Key != "temporal.task_queue" || !strings.Contains(err.Error(), "temporal.task_queue: required") {
		t.Fatalf("error does not name the key: %v", err)
	}
}

func TestMalformedValueIsNamed(t *testing.T) {
	cases := map[string]struct {
		file, env, value, key string
	}{
		"int in file":       {file: "hsm:\n  sessions: many\n", key: "hsm.sessions"},
		"duration from env": {env: "GRIDPAY_PKI_CRL_VALIDITY", value: "a week", key: "pki.crl_validity"},
		"address from env":  {env: "GRIDPAY_TEMPORAL_ADDRESS", value: "no-port", key: "temporal.address"},
		"unknown key":       {file: "hsm:\n  modul: /x.so\n", key: "hsm.modul"},
		"enum":              {env: "GRIDPAY_LOG_FORMAT", value: "xml", key: "log.format"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			src := Source{}
			if tc.file != "" {
				src.File = writeFile(t, tc.file)
			}
			if tc.env != "" {
				t.Setenv(tc.env, tc.value)
			}
			_, err := Load(DefaultWorker(), src)
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("want an error naming %s, got %v", tc.key, err)
			}
		})
	}
}

func TestSecretsNeverInline(t *testing.T) {
	file := writeFile(t, "hsm:\n  pin: \"123456\"\n")
	_, err := Load(DefaultWorker(), Source{File: file})
	if err == nil || !strings.Contains(err.Error(), "hsm.pin") || strings.Contains(err.Error(), "123456") {
		t.Fatalf("want a refusal naming hsm.pin without echoing it, got %v", err)
	}

	file = writeFile(t, "database:\n  dsn: postgres://u:hunter2@db/gridpay\n")
	_, err = Load(DefaultWorker(), Source{File: file})
	if err == nil || !strings.Contains(err.Error(), "database.dsn") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("want a refusal naming database.dsn without echoing the password, got %v", err)
	}
}

func TestSecretSources(t *testing.T) {
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte("654321\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Secret{File: pinFile, Env: "GRIDPAY_TEST_PIN"}.Read("hsm.pin")
	if err != nil || string(got) != "654321" {
		t.Fatalf("file secret: %q %v", got, err)
	}

	t.Setenv("GRIDPAY_TEST_PIN", "111111")
	got, err = Secret{Env: "GRIDPAY_TEST_PIN"}.Read("hsm.pin")
	if err != nil || string(got) != "111111" {
		t.Fatalf("env secret: %q %v", got, err)
	}

	_, err = Secret{Env: "GRIDPAY_TEST_UNSET_PIN"}.Read("hsm.pin")
	if !errors.Is(err, ErrSecretMissing) || !strings.Contains(err.Error(), "GRIDPAY_TEST_UNSET_PIN") {
		t.Fatalf("missing secret: %v", err)
	}

	if err := os.Chmod(pinFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Secret{File: pinFile}).Read("hsm.pin"); err == nil || !strings.Contains(err.Error(), "readable by every user") {
		t.Fatalf("world-readable secret file accepted: %v", err)
	}
}

func TestRedactedNeverPrintsSecrets(t *testing.T) {
	t.Setenv("GRIDPAY_HSM_PIN", "999999")
	cfg := DefaultWorker()
	cfg.Database.DSN = "postgres://gridpay:s3cret@db:5432/gridpay"
	out, err := Redacted(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, "999999") || strings.Contains(s, "s3cret") {
		t.Fatalf("secret printed:\n%s", s)
	}
	if !strings.Contains(s, "[redacted]") || !strings.Contains(s, "GRIDPAY_HSM_PIN") {
		t.Fatalf("expected the redaction marker and the secret's source:\n%s", s)
	}
}

// One file can configure the whole server stack: a key of another server
// program is ignored, a key no program knows is refused.
func TestSharedFile(t *testing.T) {
	file := writeFile(t, "listen: 127.0.0.1:9443\nplatform:\n  url: https://platform:8700\nhsm:\n  token_label: Shared\n")
	cfg, err := Load(DefaultWorker(), Source{File: file})
	if err != nil {
		t.Fatalf("worker refused the gateway's keys: %v", err)
	}
	if cfg.HSM.TokenLabel != "Shared" {
		t.Fatalf("shared key not applied: %q", cfg.HSM.TokenLabel)
	}
	g, err := Load(DefaultGateway(), Source{File: file})
	if err != nil || g.Listen != "127.0.0.1:9443" || g.Platform.URL != "https://platform:8700" {
		t.Fatalf("gateway: %+v %v", g.Listen, err)
	}
	file = writeFile(t, "gateway_url: https://x\n")
	if _, err := Load(DefaultWorker(), Source{File: file}); err == nil || !strings.Contains(err.Error(), "gateway_url: unknown key") {
		t.Fatalf("a client key in a server file: %v", err)
	}
}

// The payload codec is on unless switched off explicitly, its keys come from
// the file or the environment, and the worker's codec endpoint is checked.
func TestPayloadCodec(t *testing.T) {
	for name, cfg := range map[string]Common{"worker": DefaultWorker().Common, "gateway": DefaultGateway().Common, "admin": DefaultAdmin().Common} {
		c := cfg.Temporal.Codec
		if c.Disabled || c.KeyLabel != "gridpay-payload-key" || len(c.OldKeyLabels) != 0 || c.Listen != "" {
			t.Errorf("%s: default codec %+v; want enabled with gridpay-payload-key, no old keys, no endpoint", name, c)
		}
	}

	file := writeFile(t, `
temporal:
  codec:
    key_label: payload-2026
    old_key_labels: [payload-2025, payload-2024]
    listen: 127.0.0.1:8089
    ui_origin: http://127.0.0.1:8233
`)
	cfg, err := Load(DefaultWorker(), Source{File: file})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Temporal.Codec
	if c.KeyLabel != "payload-2026" || strings.Join(c.OldKeyLabels, ",") != "payload-2025,payload-2024" || c.Listen != "127.0.0.1:8089" {
		t.Fatalf("file not applied: %+v", c)
	}
	t.Setenv("GRIDPAY_TEMPORAL_CODEC_OLD_KEY_LABELS", "a,b")
	t.Setenv("GRIDPAY_TEMPORAL_CODEC_DISABLED", "true")
	t.Setenv("GRIDPAY_TEMPORAL_CODEC_LISTEN", "")
	gw, err := Load(DefaultGateway(), Source{})
	if err != nil {
		t.Fatal(err)
	}
	if c := gw.Temporal.Codec; strings.Join(c.OldKeyLabels, ",") != "a,b" || !c.Disabled {
		t.Fatalf("environment not applied: %+v", c)
	}
}

func TestPayloadCodecRefusals(t *testing.T) {
	cases := map[string]struct {
		body, key, problem string
	}{
		"unknown key":         {"temporal:\n  codec:\n    key_lable: x\n", "temporal.codec.key_lable", "unknown key"},
		"no key label":        {"temporal:\n  codec:\n    key_label: \"\"\n", "temporal.codec.key_label", "required"},
		"current key as old":  {"temporal:\n  codec:\n    old_key_labels: [gridpay-payload-key]\n", "temporal.codec.old_key_labels", "current key"},
		"old key twice":       {"temporal:\n  codec:\n    old_key_labels: [k1, k1]\n", "temporal.codec.old_key_labels", "listed twice"},
		"empty old key":       {"temporal:\n  codec:\n    old_key_labels: [\"\"]\n", "temporal.codec.old_key_labels", "empty"},
		"listen not hostport": {"temporal:\n  codec:\n    listen: 8089\n", "temporal.codec.listen", "host:port"},
		"endpoint without codec": {"temporal:\n  codec:\n    disabled: true\n    listen: 127.0.0.1:8089\n",
			"temporal.codec.listen", "needs the codec"},
		"no origin":        {"temporal:\n  codec:\n    listen: 127.0.0.1:8089\n    ui_origin: \"\"\n", "temporal.codec.ui_origin", "required"},
		"wildcard origin":  {"temporal:\n  codec:\n    listen: 127.0.0.1:8089\n    ui_origin: \"*\"\n", "temporal.codec.ui_origin", "any web page"},
		"origin with path": {"temporal:\n  codec:\n    listen: 127.0.0.1:8089\n    ui_origin: http://127.0.0.1:8233/\n", "temporal.codec.ui_origin", "without a path"},
		"origin scheme":    {"temporal:\n  codec:\n    listen: 127.0.0.1:8089\n    ui_origin: ftp://ui\n", "temporal.codec.ui_origin", "http://"},
		"origin case":      {"temporal:\n  codec:\n    listen: 127.0.0.1:8089\n    ui_origin: http://UI:8080\n", "temporal.codec.ui_origin", "lower case"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Load(DefaultWorker(), Source{File: writeFile(t, tc.body)})
			if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.problem) {
				t.Fatalf("want an error naming %s (%s), got %v", tc.key, tc.problem, err)
			}
		})
	}

	// Only the worker serves the endpoint: the gateway and adminctl, which
	// may share the file, ignore its settings.
	file := writeFile(t, "temporal:\n  codec:\n    listen: 127.0.0.1:8089\n    ui_origin: \"*\"\n")
	if _, err := Load(DefaultGateway(), Source{File: file}); err != nil {
		t.Errorf("gateway: %v", err)
	}
	if _, err := Load(DefaultAdmin(), Source{File: file}); err != nil {
		t.Errorf("adminctl: %v", err)
	}
	// Switching the codec off is explicit; its key labels then do not matter.
	file = writeFile(t, "temporal:\n  codec:\n    disabled: true\n    key_label: \"\"\n")
	if cfg, err := Load(DefaultWorker(), Source{File: file}); err != nil || !cfg.Temporal.Codec.Disabled {
		t.Errorf("disabled codec: %+v %v", cfg.Temporal.Codec, err)
	}
}

// The audit anchors: on by schedule every hour, files only when a directory
// is set, shared by the worker and adminctl through one file.
func TestAuditSettings(t *testing.T) {
	w := DefaultWorker()
	if w.Audit.AnchorInterval != time.Hour || w.Audit.AnchorDir != "" || w.Audit.SignerKeyLabel != "gridpay-audit-signer" {
		t.Fatalf("worker audit defaults: %+v", w.Audit)
	}
	file := writeFile(t, "audit:\n  anchor_interval: 5m\n  anchor_dir: /worm/anchors\n")
	w, err := Load(DefaultWorker(), Source{File: file})
	if err != nil || w.Audit.AnchorInterval != 5*time.Minute || w.Audit.AnchorDir != "/worm/anchors" {
		t.Fatalf("worker: %+v, %v", w.Audit, err)
	}
	a, err := Load(DefaultAdmin(), Source{File: file})
	if err != nil || a.Audit.AnchorDir != "/worm/anchors" {
		t.Fatalf("adminctl: %+v, %v", a.Audit, err)
	}
	if _, err := Load(DefaultGateway(), Source{File: file}); err != nil {
		t.Fatalf("the gateway refuses the worker's audit keys in a shared file: %v", err)
	}
	t.Setenv("GRIDPAY_AUDIT_ANCHOR_INTERVAL", "0s")
	if _, err := Load(DefaultWorker(), Source{File: file}); err == nil || !strings.Contains(err.Error(), "audit.anchor_interval") {
		t.Fatalf("zero interval: %v", err)
	}
}
