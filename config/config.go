// Package config holds the typed configuration of every GridPay program and
// loads it with viper from, in increasing precedence, built-in defaults, a
// YAML file, the environment (GRIDPAY_ prefix, dots become underscores:
// GRIDPAY_DATABASE_DSN sets database.dsn) and command-line flags.
//
// Secrets (PINs, the database password) never appear in a config file or in
// these structs: a Secret only says where the value is (a file or an
// environment variable), so printing a config can never print a secret.
package config

import (
	"time"
)

// Log configures the zap logger.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `mapstructure:"level" json:"level"`
	// Format is json (production) or console (development).
	Format string `mapstructure:"format" json:"format"`
}

// Database configures GridPay's own PostgreSQL database.
type Database struct {
	// DSN is a postgres:// URL or key=value string without a password.
	DSN string `mapstructure:"dsn" json:"dsn"`
	// Password is read from a file or GRIDPAY_DATABASE_PASSWORD when the
	// server asks for one; optional (trust or peer authentication).
	Password Secret `mapstructure:"password" json:"password"`
	// MaxConns bounds the connection pool.
	MaxConns int32 `mapstructure:"max_conns" json:"max_conns"`
}

// HSM configures the hardware security module (the encryption card) as a
// PKCS#11 token.
type HSM struct {
	// Module is the path of the PKCS#11 library.
	Module string `mapstructure:"module" json:"module"`
	// TokenLabel or TokenSerial selects the token; at least one is required.
	TokenLabel  string `mapstructure:"token_label" json:"token_label"`
	TokenSerial string `mapstructure:"token_serial" json:"token_serial"`
	// PIN is the user PIN of the token.
	PIN Secret `mapstructure:"pin" json:"pin"`
	// Sessions is the size of the session pool (0 = twice the CPU count).
	Sessions int `mapstructure:"sessions" json:"sessions"`
}

// Temporal configures the connection to the Temporal cluster.
type Temporal struct {
	// Address is host:port of the frontend service.
	Address   string `mapstructure:"address" json:"address"`
	Namespace string `mapstructure:"namespace" json:"namespace"`
	TaskQueue string `mapstructure:"task_queue" json:"task_queue"`
	// UIAddress is where operators open the Temporal Web UI (shown in output).
	UIAddress string `mapstructure:"ui_address" json:"ui_address"`
	// Codec encrypts what GridPay's programs hand to Temporal.
	Codec PayloadCodec `mapstructure:"codec" json:"codec"`
}

// PayloadCodec configures the encryption of Temporal payloads (workflow,
// activity, signal, update and query arguments and results, failure
// details and messages) with AES-256-GCM keys that never leave the HSM: the
// Temporal server, its database and its Web UI hold ciphertext only. Every
// program that talks to Temporal must use the same keys.
type PayloadCodec struct {
	// KeyLabel is the HSM key that encrypts (adminctl ca init creates it).
	KeyLabel string `mapstructure:"key_label" json:"key_label"`
	// OldKeyLabels are earlier keys, still accepted for decrypting what
	// they encrypted (key rotation); they never encrypt.
	OldKeyLabels []string `mapstructure:"old_key_labels" json:"old_key_labels"`
	// Disabled sends payloads to Temporal in clear. Never the default: it
	// must be set explicitly, and programs warn about it at start.
	Disabled bool `mapstructure:"disabled" json:"disabled"`
	// Listen is where the worker serves the codec endpoint the Temporal
	// Web UI decodes payloads through (empty: not served). Only the worker
	// reads it; keep it on loopback or the admin network.
	Listen string `mapstructure:"listen" json:"listen"`
	// UIOrigin is the Web UI's origin (scheme://host:port), the one web
	// origin the codec endpoint answers (CORS). Worker only.
	UIOrigin string `mapstructure:"ui_origin" json:"ui_origin"`
}

// PKI configures the certificate authority whose keys live in the HSM.
type PKI struct {
	// Dir receives the exported CA certificates and CRLs (PEM/DER files).
	Dir string `mapstructure:"dir" json:"dir"`
	// Organization and Country go into every certificate subject.
	Organization string `mapstructure:"organization" json:"organization"`
	Country      string `mapstructure:"country" json:"country"`
	// Key labels of the three CA keys on the HSM token.
	RootKeyLabel     string `mapstructure:"root_key_label" json:"root_key_label"`
	CustomerKeyLabel string `mapstructure:"customer_key_label" json:"customer_key_label"`
	ServicesKeyLabel string `mapstructure:"services_key_label" json:"services_key_label"`
	// Validity of issued certificates and CRLs.
	RootValidity     time.Duration `mapstructure:"root_validity" json:"root_validity"`
	IssuingValidity  time.Duration `mapstructure:"issuing_validity" json:"issuing_validity"`
	CustomerValidity time.Duration `mapstructure:"customer_validity" json:"customer_validity"`
	ServerValidity   time.Duration `mapstructure:"server_validity" json:"server_validity"`
	CRLValidity      time.Duration `mapstructure:"crl_validity" json:"crl_validity"`
	// CRLPublishInterval is how often the worker's schedule republishes the
	// CRLs; well under CRLValidity, so a missed run or two is harmless.
	CRLPublishInterval time.Duration `mapstructure:"crl_publish_interval" json:"crl_publish_interval"`
	// CRLURL is published in issued certificates as the distribution point.
	CRLURL string `mapstructure:"crl_url" json:"crl_url"`
}

// Common is the part every server-side program shares.
type Common struct {
	Log      Log      `mapstructure:"log" json:"log"`
	Database Database `mapstructure:"database" json:"database"`
	HSM      HSM      `mapstructure:"hsm" json:"hsm"`
	Temporal Temporal `mapstructure:"temporal" json:"temporal"`
}

// Worker is the configuration of the Temporal worker.
type Worker struct {
	Common   `mapstructure:",squash"`
	PKI      PKI          `mapstructure:"pki" json:"pki"`
	Platform Platform     `mapstructure:"platform" json:"platform"`
	UnionPay UnionPay     `mapstructure:"unionpay" json:"unionpay"`
	Load     LoadSettings `mapstructure:"load" json:"load"`
	Audit    Audit        `mapstructure:"audit" json:"audit"`
	// ShutdownTimeout bounds the graceful stop of running activities.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout" json:"shutdown_timeout"`
}

// Audit configures the anchoring of the audit log outside PostgreSQL: the
// worker signs a checkpoint of the log's head with an HSM key every
// AnchorInterval (a Temporal schedule), keeps it in the workflow's result
// and writes it to AnchorDir; adminctl audit verify checks the log against
// them, which detects a consistent rewrite of the log by a database
// superuser.
type Audit struct {
	// AnchorInterval is how often the head is anchored (worker).
	AnchorInterval time.Duration `mapstructure:"anchor_interval" json:"anchor_interval"`
	// AnchorDir receives one file per anchor, never rewritten (empty: no
	// files, the anchors are only in Temporal). In production, a WORM
	// mount (object lock, append-only share) that the database's
	// administrators cannot write to.
	AnchorDir string `mapstructure:"anchor_dir" json:"anchor_dir"`
	// SignerKeyLabel is the HSM key that signs anchors, its services-CA
	// certificate (service "audit") stored under the same label: adminctl
	// ca issue --name audit --key-label gridpay-audit-signer.
	SignerKeyLabel string `mapstructure:"signer_key_label" json:"signer_key_label"`
}

// Platform configures GridPay's connection to the power company's payment
// platform web service (mutual TLS; the firewall admits GridPay's services
// CA certificates only).
type Platform struct {
	// URL is the base URL, https://host:port.
	URL string `mapstructure:"url" json:"url"`
	// CAFile holds the CA certificates the platform's server certificate
	// must chain to (the company's own PKI, not GridPay's).
	CAFile string `mapstructure:"ca_file" json:"ca_file"`
	// ClientKeyLabel is the HSM key (with its services-CA certificate stored
	// under the same label) this program presents to the platform.
	ClientKeyLabel string `mapstructure:"client_key_label" json:"client_key_label"`
	// Timeout bounds one call.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout"`
}

// UnionPay configures the online payment gateway (ACP 5.1.0 style).
type UnionPay struct {
	MerchantID string `mapstructure:"merchant_id" json:"merchant_id"`
	// The gateway's endpoints.
	FrontURL string `mapstructure:"front_url" json:"front_url"` // frontTransReq: the payer's browser posts the consume form here
	BackURL  string `mapstructure:"back_url" json:"back_url"`   // backTransReq: refund, cancel
	QueryURL string `mapstructure:"query_url" json:"query_url"` // queryTrans
	FileURL  string `mapstructure:"file_url" json:"file_url"`   // fileTransReq: reconciliation file
	// The merchant signing key: an HSM key label (production) or a PEM
	// file (development); exactly one. Its certificate (certId) is a file.
	MerchantKeyLabel string `mapstructure:"merchant_key_label" json:"merchant_key_label"`
	MerchantKeyFile  string `mapstructure:"merchant_key_file" json:"merchant_key_file"`
	MerchantCertFile string `mapstructure:"merchant_cert_file" json:"merchant_cert_file"`
	// RootFile holds the CA certificates the gateway's signing certificate
	// must chain to; Organization is the subject organisation it must name.
	RootFile     string `mapstructure:"root_file" json:"root_file"`
	Organization string `mapstructure:"organization" json:"organization"`
	// NotifyURL is where the gateway sends back notifications (GridPay's
	// gateway, notify listener); ReturnURL is where the payer's browser
	// comes back after paying.
	NotifyURL string `mapstructure:"notify_url" json:"notify_url"`
	ReturnURL string `mapstructure:"return_url" json:"return_url"`
	// PayTimeout is how long a payer has to pay an order.
	PayTimeout time.Duration `mapstructure:"pay_timeout" json:"pay_timeout"`
	Timeout    time.Duration `mapstructure:"timeout" json:"timeout"`
}

// PaymentTiming tunes the waits of the payment saga; zero keeps the
// saga's defaults (first query after a minute, doubling to five minutes...).
type PaymentTiming struct {
	QueryFirst     time.Duration `mapstructure:"query_first" json:"query_first"`
	QueryMax       time.Duration `mapstructure:"query_max" json:"query_max"`
	Grace          time.Duration `mapstructure:"grace" json:"grace"`
	RefundQueryMax time.Duration `mapstructure:"refund_query_max" json:"refund_query_max"`
	PostRetryMax   time.Duration `mapstructure:"post_retry_max" json:"post_retry_max"`
}

// LoadSettings tune the signed load exchange (patent CN101211451A): prepaid funds
// onto the USB key's wallet.
type LoadSettings struct {
	// SignerKeyLabel is the HSM key that signs load-allow commands and
	// wallet states (the worker), its services-CA certificate (service
	// "load") stored under the same label: adminctl ca issue --name load
	// --key-label gridpay-load-signer.
	SignerKeyLabel string `mapstructure:"signer_key_label" json:"signer_key_label"`
	// AllowValidity is how long an allow command is good for: the USB key
	// refuses it from then on, so a load is settled no later than that
	// (the gateway passes it to every load).
	AllowValidity time.Duration `mapstructure:"allow_validity" json:"allow_validity"`
	// ReceiptGrace is how long past the allow's expiry the load waits for
	// the receipt before it waits for the key's next contact instead.
	ReceiptGrace time.Duration `mapstructure:"receipt_grace" json:"receipt_grace"`
}

// ClientLoad tunes the client's side of loads.
type ClientLoad struct {
	// ConfirmTimeout is how long the confirmation prompt waits: no answer
	// in time is no (the patent's configurable wait).
	ConfirmTimeout time.Duration `mapstructure:"confirm_timeout" json:"confirm_timeout"`
}

// Gateway is the configuration of the security server.
type Gateway struct {
	Common   `mapstructure:",squash"`
	PKI      PKI      `mapstructure:"pki" json:"pki"`
	Platform Platform `mapstructure:"platform" json:"platform"`
	UnionPay UnionPay `mapstructure:"unionpay" json:"unionpay"`
	// Payment tunes the payment sagas the gateway starts.
	Payment PaymentTiming `mapstructure:"payment" json:"payment"`
	// Load tunes the loads the gateway starts.
	Load LoadSettings `mapstructure:"load" json:"load"`
	// Listen is the address customers' clients connect to (mutual TLS 1.3).
	Listen string `mapstructure:"listen" json:"listen"`
	// PublicListen serves UnionPay's back notifications and the pay links
	// the payer's browser opens (HTTP; TLS is terminated in front of it in
	// production). PublicURL is how browsers reach it.
	PublicListen string `mapstructure:"public_listen" json:"public_listen"`
	PublicURL    string `mapstructure:"public_url" json:"public_url"`
	// PayLinkSecret keys the HMAC of pay links (at least 32 bytes); every
	// gateway instance behind one public URL shares it.
	PayLinkSecret Secret `mapstructure:"pay_link_secret" json:"pay_link_secret"`
	// TLSKeyLabel is the HSM key of the gateway's server certificate (the
	// certificate is stored on the HSM under the same label).
	TLSKeyLabel string `mapstructure:"tls_key_label" json:"tls_key_label"`
	// RatePerSecond and RateBurst limit each client certificate.
	RatePerSecond float64 `mapstructure:"rate_per_second" json:"rate_per_second"`
	RateBurst     int     `mapstructure:"rate_burst" json:"rate_burst"`
	// RequestTimeout bounds a request, backend calls included.
	RequestTimeout time.Duration `mapstructure:"request_timeout" json:"request_timeout"`
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout time.Duration `mapstructure:"idle_timeout" json:"idle_timeout"`
	// CRLRefresh is how often the gateway reloads the CRLs from the database.
	CRLRefresh time.Duration `mapstructure:"crl_refresh" json:"crl_refresh"`
	// ShutdownTimeout bounds the graceful stop.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout" json:"shutdown_timeout"`
}

// ClientToken selects the customer's USB key.
type ClientToken struct {
	// Module is the PKCS#11 library of the USB key: SoftHSM2 in development,
	// OpenSC's opensc-pkcs11.so for common real keys.
	Module string `mapstructure:"module" json:"module"`
	Label  string `mapstructure:"label" json:"label"`
	Serial string `mapstructure:"serial" json:"serial"`
	// PIN is optional: without a file or environment variable the client
	// prompts for it without echo (and refuses when there is no terminal).
	PIN Secret `mapstructure:"pin" json:"pin"`
	// KeyLabel is the label of the key pair and certificate on the key.
	KeyLabel string `mapstructure:"key_label" json:"key_label"`
}

// Client is the configuration of the customer's desktop client.
type Client struct {
	Log   Log         `mapstructure:"log" json:"log"`
	Token ClientToken `mapstructure:"token" json:"token"`
	// GatewayURL is https://host:port of the security server.
	GatewayURL string `mapstructure:"gateway_url" json:"gateway_url"`
	// CAFile is GridPay's root CA certificate (root.pem): the gateway's
	// certificate and the key's own certificate must chain to it.
	CAFile string `mapstructure:"ca_file" json:"ca_file"`
	// StateDir keeps the PIN-failure counts and the local log.
	StateDir string `mapstructure:"state_dir" json:"state_dir"`
	// MaxPINFailures locks the key after that many wrong PINs in a row.
	MaxPINFailures int `mapstructure:"max_pin_failures" json:"max_pin_failures"`
	// Timeout bounds one request to the gateway.
	Timeout time.Duration `mapstructure:"timeout" json:"timeout"`
	Load    ClientLoad    `mapstructure:"load" json:"load"`
}

// Admin is the configuration of adminctl.
type Admin struct {
	Common `mapstructure:",squash"`
	PKI    PKI `mapstructure:"pki" json:"pki"`
	// Audit.AnchorDir is where audit verify reads anchors by default.
	Audit Audit `mapstructure:"audit" json:"audit"`
}

func defaultCommon() Common {
	return Common{
		Log: Log{Level: "info", Format: "console"},
		Database: Database{
			DSN:      "postgres://gridpay@127.0.0.1:55432/gridpay?sslmode=disable",
			Password: Secret{Env: "GRIDPAY_DATABASE_PASSWORD"},
			MaxConns: 10,
		},
		HSM: HSM{
			Module:     "/usr/lib/softhsm/libsofthsm2.so",
			TokenLabel: "GridPay HSM",
			PIN:        Secret{Env: "GRIDPAY_HSM_PIN"},
		},
		Temporal: Temporal{
			Address:   "127.0.0.1:7233",
			Namespace: "default",
			TaskQueue: "gridpay",
			UIAddress: "http://127.0.0.1:8233",
			Codec: PayloadCodec{
				KeyLabel:     "gridpay-payload-key",
				OldKeyLabels: []string{},
				UIOrigin:     "http://127.0.0.1:8233",
			},
		},
	}
}

func defaultPKI() PKI {
	return PKI{
		Dir:              ".run/pki",
		Organization:     "GridPay Power Supply Co.",
		Country:          "CN",
		RootKeyLabel:     "gridpay-root-ca",
		CustomerKeyLabel: "gridpay-customer-ca",
		ServicesKeyLabel: "gridpay-services-ca",
		RootValidity:     20 * 365 * 24 * time.Hour,
		IssuingValidity:  10 * 365 * 24 * time.Hour,
		CustomerValidity: 2 * 365 * 24 * time.Hour,
		ServerValidity:   365 * 24 * time.Hour,
		CRLValidity:      7 * 24 * time.Hour,
		// Daily: six missed runs still leave a valid CRL.
		CRLPublishInterval: 24 * time.Hour,
	}
}

// DefaultWorker returns the worker's built-in defaults (the development stack).
func DefaultWorker() Worker {
	p := defaultPlatform()
	p.ClientKeyLabel = "gridpay-worker-platform"
	return Worker{Common: defaultCommon(), PKI: defaultPKI(), Platform: p, UnionPay: defaultUnionPay(), Load: defaultLoad(), Audit: defaultAudit(),
		ShutdownTimeout: 30 * time.Second}
}

func defaultAudit() Audit {
	return Audit{AnchorInterval: time.Hour, SignerKeyLabel: "gridpay-audit-signer"}
}

func defaultLoad() LoadSettings {
	return LoadSettings{SignerKeyLabel: "gridpay-load-signer", AllowValidity: 2 * time.Minute, ReceiptGrace: 30 * time.Second}
}

func defaultUnionPay() UnionPay {
	return UnionPay{
		MerchantID:       "898310048160001",
		FrontURL:         "http://127.0.0.1:8710/gateway/api/frontTransReq.do",
		BackURL:          "http://127.0.0.1:8710/gateway/api/backTransReq.do",
		QueryURL:         "http://127.0.0.1:8710/gateway/api/queryTrans.do",
		FileURL:          "http://127.0.0.1:8710/gateway/api/fileTransReq.do",
		MerchantKeyFile:  ".run/unionpay/merchant-key.pem",
		MerchantCertFile: ".run/unionpay/merchant.pem",
		RootFile:         ".run/unionpay-sim/root.pem",
		Organization:     "China UnionPay",
		NotifyURL:        "http://127.0.0.1:8444/unionpay/notify",
		ReturnURL:        "http://127.0.0.1:8444/pay/return",
		PayTimeout:       15 * time.Minute,
		Timeout:          15 * time.Second,
	}
}

func defaultPlatform() Platform {
	return Platform{
		URL:            "https://127.0.0.1:8700",
		CAFile:         ".run/platform-sim/ca.pem",
		ClientKeyLabel: "gridpay-gateway-platform",
		Timeout:        10 * time.Second,
	}
}

// DefaultGateway returns the gateway's built-in defaults (the development stack).
func DefaultGateway() Gateway {
	return Gateway{
		Common:          defaultCommon(),
		PKI:             defaultPKI(),
		Platform:        defaultPlatform(),
		UnionPay:        defaultUnionPay(),
		Load:            defaultLoad(),
		Listen:          "127.0.0.1:8443",
		PublicListen:    "127.0.0.1:8444",
		PublicURL:       "http://127.0.0.1:8444",
		PayLinkSecret:   Secret{Env: "GRIDPAY_PAY_LINK_SECRET"},
		TLSKeyLabel:     "gridpay-gateway-tls",
		RatePerSecond:   20,
		RateBurst:       40,
		RequestTimeout:  15 * time.Second,
		IdleTimeout:     2 * time.Minute,
		CRLRefresh:      30 * time.Second,
		ShutdownTimeout: 20 * time.Second,
	}
}

// DefaultClient returns the desktop client's built-in defaults.
func DefaultClient() Client {
	return Client{
		Log: Log{Level: "warn", Format: "console"},
		Token: ClientToken{
			Module:   "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
			PIN:      Secret{Env: "GRIDPAY_TOKEN_PIN"},
			KeyLabel: "gridpay-client",
		},
		GatewayURL:     "https://127.0.0.1:8443",
		CAFile:         ".run/pki/root.pem",
		StateDir:       "~/.local/state/gridpay",
		MaxPINFailures: 5,
		Timeout:        30 * time.Second,
		Load:           ClientLoad{ConfirmTimeout: 30 * time.Second},
	}
}

// DefaultAdmin returns adminctl's built-in defaults (the development stack).
func DefaultAdmin() Admin {
	return Admin{Common: defaultCommon(), PKI: defaultPKI(), Audit: defaultAudit()}
}
