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
	Common `mapstructure:",squash"`
	PKI    PKI `mapstructure:"pki" json:"pki"`
	// ShutdownTimeout bounds the graceful stop of running activities.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout" json:"shutdown_timeout"`
}

// Admin is the configuration of adminctl.
type Admin struct {
	Common `mapstructure:",squash"`
	PKI    PKI `mapstructure:"pki" json:"pki"`
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
	return Worker{Common: defaultCommon(), PKI: defaultPKI(), ShutdownTimeout: 30 * time.Second}
}

// DefaultAdmin returns adminctl's built-in defaults (the development stack).
func DefaultAdmin() Admin {
	return Admin{Common: defaultCommon(), PKI: defaultPKI()}
}
