package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem with one configuration key.
type FieldError struct {
	Key     string
	Problem string
}

func (e FieldError) Error() string { return e.Key + ": " + e.Problem }

// Errors is every problem found in a configuration; its message names each
// key and what is wrong with it.
type Errors []FieldError

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, f := range e {
		parts[i] = f.Error()
	}
	return "invalid configuration: " + strings.Join(parts, "; ")
}

// checker accumulates FieldErrors.
type checker struct{ errs Errors }

func (c *checker) add(key, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Key: key, Problem: fmt.Sprintf(format, args...)})
}

func (c *checker) required(key, value string) bool {
	if strings.TrimSpace(value) == "" {
		c.add(key, "required but empty")
		return false
	}
	return true
}

func (c *checker) oneOf(key, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	c.add(key, "%q is not one of %s", value, strings.Join(allowed, ", "))
}

func (c *checker) hostPort(key, value string) {
	if !c.required(key, value) {
		return
	}
	host, port, err := net.SplitHostPort(value)
	if err != nil {
		c.add(key, "%q is not host:port", value)
		return
	}
	if host == "" {
		c.add(key, "%q has no host", value)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		c.add(key, "%q has an invalid port", value)
	}
}

func (c *checker) positive(key string, d time.Duration) {
	if d <= 0 {
		c.add(key, "must be a positive duration, got %s", d)
	}
}

func (c *checker) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	return c.errs
}

func (l Log) check(c *checker, prefix string) {
	c.oneOf(prefix+".level", l.Level, "debug", "info", "warn", "error")
	c.oneOf(prefix+".format", l.Format, "json", "console")
}

func (d Database) check(c *checker, prefix string) {
	if c.required(prefix+".dsn", d.DSN) && dsnHasPassword(d.DSN) {
		c.add(prefix+".dsn", "must not contain a password; use %s.password.file or %s", prefix, d.Password.Env)
	}
	if d.MaxConns < 1 || d.MaxConns > 1000 {
		c.add(prefix+".max_conns", "must be between 1 and 1000, got %d", d.MaxConns)
	}
}

func (h HSM) check(c *checker, prefix string) {
	c.required(prefix+".module", h.Module)
	if h.TokenLabel == "" && h.TokenSerial == "" {
		c.add(prefix+".token_label", "required (or %s.token_serial)", prefix)
	}
	if h.Sessions < 0 || h.Sessions > 256 {
		c.add(prefix+".sessions", "must be between 0 and 256, got %d", h.Sessions)
	}
}

func (t Temporal) check(c *checker, prefix string) {
	c.hostPort(prefix+".address", t.Address)
	c.required(prefix+".namespace", t.Namespace)
	c.required(prefix+".task_queue", t.TaskQueue)
	t.Codec.check(c, prefix+".codec")
}

func (p PayloadCodec) check(c *checker, prefix string) {
	if p.Disabled {
		return
	}
	c.required(prefix+".key_label", p.KeyLabel)
	seen := map[string]bool{p.KeyLabel: true}
	for i, label := range p.OldKeyLabels {
		switch {
		case strings.TrimSpace(label) == "":
			c.add(prefix+".old_key_labels", "entry %d is empty", i+1)
		case label == p.KeyLabel:
			c.add(prefix+".old_key_labels", "%q is the current key (%s.key_label); list only earlier keys", label, prefix)
		case seen[label]:
			c.add(prefix+".old_key_labels", "%q is listed twice", label)
		}
		seen[label] = true
	}
}

// checkServer checks the codec endpoint the worker serves to the Web UI.
func (p PayloadCodec) checkServer(c *checker, prefix string) {
	if p.Listen == "" {
		return
	}
	c.hostPort(prefix+".listen", p.Listen)
	if p.Disabled {
		c.add(prefix+".listen", "the codec endpoint needs the codec, but %s.disabled is true", prefix)
	}
	if c.required(prefix+".ui_origin", p.UIOrigin) {
		if problem := originProblem(p.UIOrigin); problem != "" {
			c.add(prefix+".ui_origin", "%q %s", p.UIOrigin, problem)
		}
	}
}

// originProblem says what keeps s from being a web origin as browsers send
// it in the Origin header (scheme://host[:port], nothing more), or "".
func originProblem(s string) string {
	if s == "*" || s == "null" {
		return "would let any web page decrypt payloads; name the Web UI's origin"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must start with http:// or https://"
	case u.Host == "" || u.Hostname() == "":
		return "has no host"
	case u.User != nil, u.Path != "", u.RawQuery != "", u.Fragment != "", strings.HasSuffix(s, "?"), strings.HasSuffix(s, "#"):
		return "must be scheme://host[:port] only, without a path (not even a trailing /)"
	case strings.ToLower(s) != s:
		return "must be lower case, as browsers send it"
	}
	return ""
}

func (p PKI) check(c *checker, prefix string) {
	c.required(prefix+".dir", p.Dir)
	c.required(prefix+".organization", p.Organization)
	if len(p.Country) != 2 {
		c.add(prefix+".country", "must be a two-letter ISO 3166 code, got %q", p.Country)
	}
	c.required(prefix+".root_key_label", p.RootKeyLabel)
	c.required(prefix+".customer_key_label", p.CustomerKeyLabel)
	c.required(prefix+".services_key_label", p.ServicesKeyLabel)
	c.positive(prefix+".root_validity", p.RootValidity)
	c.positive(prefix+".issuing_validity", p.IssuingValidity)
	c.positive(prefix+".customer_validity", p.CustomerValidity)
	c.positive(prefix+".server_validity", p.ServerValidity)
	c.positive(prefix+".crl_validity", p.CRLValidity)
	c.positive(prefix+".crl_publish_interval", p.CRLPublishInterval)
	if p.CRLPublishInterval*2 > p.CRLValidity {
		c.add(prefix+".crl_publish_interval", "must be at most half of %s.crl_validity (%s), got %s", prefix, p.CRLValidity, p.CRLPublishInterval)
	}
	if p.IssuingValidity > p.RootValidity {
		c.add(prefix+".issuing_validity", "must not exceed %s.root_validity", prefix)
	}
	if p.CustomerValidity > p.IssuingValidity {
		c.add(prefix+".customer_validity", "must not exceed %s.issuing_validity", prefix)
	}
}

func (cm Common) check(c *checker) {
	cm.Log.check(c, "log")
	cm.Database.check(c, "database")
	cm.HSM.check(c, "hsm")
	cm.Temporal.check(c, "temporal")
}

// Validate checks the worker configuration.
func (w Worker) Validate() error {
	var c checker
	w.Common.check(&c)
	w.PKI.check(&c, "pki")
	w.Platform.check(&c, "platform")
	w.UnionPay.check(&c, "unionpay", true)
	c.required("load.signer_key_label", w.Load.SignerKeyLabel)
	c.positive("audit.anchor_interval", w.Audit.AnchorInterval)
	c.required("audit.signer_key_label", w.Audit.SignerKeyLabel)
	c.positive("shutdown_timeout", w.ShutdownTimeout)
	w.Temporal.Codec.checkServer(&c, "temporal.codec")
	return c.err()
}

func (p Platform) check(c *checker, prefix string) {
	if c.required(prefix+".url", p.URL) && !strings.HasPrefix(p.URL, "https://") {
		c.add(prefix+".url", "must be an https:// URL, got %q", p.URL)
	}
	c.required(prefix+".ca_file", p.CAFile)
	c.required(prefix+".client_key_label", p.ClientKeyLabel)
	c.positive(prefix+".timeout", p.Timeout)
}

func (u UnionPay) check(c *checker, prefix string, signs bool) {
	c.required(prefix+".merchant_id", u.MerchantID)
	for _, k := range []struct{ key, v string }{{"front_url", u.FrontURL}, {"back_url", u.BackURL}, {"query_url", u.QueryURL},
		{"file_url", u.FileURL}, {"notify_url", u.NotifyURL}, {"return_url", u.ReturnURL}} {
		if c.required(prefix+"."+k.key, k.v) && !strings.HasPrefix(k.v, "https://") && !strings.HasPrefix(k.v, "http://") {
			c.add(prefix+"."+k.key, "must be an http(s):// URL, got %q", k.v)
		}
	}
	c.required(prefix+".root_file", u.RootFile)
	c.required(prefix+".organization", u.Organization)
	if signs {
		if (u.MerchantKeyLabel == "") == (u.MerchantKeyFile == "") {
			c.add(prefix+".merchant_key_label", "set exactly one of %s.merchant_key_label (HSM) and %s.merchant_key_file", prefix, prefix)
		}
		c.required(prefix+".merchant_cert_file", u.MerchantCertFile)
	}
	c.positive(prefix+".pay_timeout", u.PayTimeout)
	c.positive(prefix+".timeout", u.Timeout)
}

// Validate checks the gateway configuration.
func (g Gateway) Validate() error {
	var c checker
	g.Common.check(&c)
	g.PKI.check(&c, "pki")
	g.Platform.check(&c, "platform")
	g.UnionPay.check(&c, "unionpay", false)
	c.hostPort("listen", g.Listen)
	c.hostPort("public_listen", g.PublicListen)
	if c.required("public_url", g.PublicURL) && !strings.HasPrefix(g.PublicURL, "https://") && !strings.HasPrefix(g.PublicURL, "http://") {
		c.add("public_url", "must be an http(s):// URL, got %q", g.PublicURL)
	}
	c.required("tls_key_label", g.TLSKeyLabel)
	if g.RatePerSecond <= 0 {
		c.add("rate_per_second", "must be positive, got %g", g.RatePerSecond)
	}
	if g.RateBurst < 1 {
		c.add("rate_burst", "must be at least 1, got %d", g.RateBurst)
	}
	c.positive("request_timeout", g.RequestTimeout)
	c.positive("idle_timeout", g.IdleTimeout)
	c.positive("crl_refresh", g.CRLRefresh)
	c.positive("shutdown_timeout", g.ShutdownTimeout)
	g.Load.check(&c, "load")
	return c.err()
}

func (l LoadSettings) check(c *checker, prefix string) {
	c.positive(prefix+".allow_validity", l.AllowValidity)
	if l.ReceiptGrace < 0 {
		c.add(prefix+".receipt_grace", "must not be negative, got %s", l.ReceiptGrace)
	}
}

// Validate checks the client configuration.
func (cl Client) Validate() error {
	var c checker
	cl.Log.check(&c, "log")
	c.required("token.module", cl.Token.Module)
	c.required("token.key_label", cl.Token.KeyLabel)
	if c.required("gateway_url", cl.GatewayURL) && !strings.HasPrefix(cl.GatewayURL, "https://") {
		c.add("gateway_url", "must be an https:// URL, got %q", cl.GatewayURL)
	}
	c.required("ca_file", cl.CAFile)
	c.required("state_dir", cl.StateDir)
	if cl.MaxPINFailures < 1 || cl.MaxPINFailures > 15 {
		c.add("max_pin_failures", "must be between 1 and 15, got %d", cl.MaxPINFailures)
	}
	c.positive("timeout", cl.Timeout)
	c.positive("load.confirm_timeout", cl.Load.ConfirmTimeout)
	return c.err()
}

// Validate checks the adminctl configuration.
func (a Admin) Validate() error {
	var c checker
	a.Common.check(&c)
	a.PKI.check(&c, "pki")
	return c.err()
}
