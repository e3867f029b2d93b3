// Package provision turns a blank PKCS#11 token into a customer's USB key
// directly, without the binding workflow: key pair generated on the token,
// a CSR signed by the token, the certificate issued by the customer CA,
// written onto the token with the CA certificate, and an active binding
// recorded. It is the development and test fixture of the key-binding path
// (adminctl dev provision-key, end-to-end tests); production binds through
// the binding workflow, which adds the platform check and the proof step.
package provision

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gridpay/gridpay/authority"
	"github.com/gridpay/gridpay/hsm"
	"github.com/gridpay/gridpay/internal/derrors"
	"github.com/gridpay/gridpay/store"
)

// Labels of the objects a customer's USB key holds.
const (
	KeyLabel = "gridpay-client"      // the key pair and its certificate
	CALabel  = "gridpay-customer-ca" // the customer CA certificate
)

// InitToken initialises a token on the module's first free slot with the
// label and PINs, and returns its serial.
func InitToken(module, label string, soPIN, userPIN []byte) (serial string, err error) {
	defer derrors.Wrap(&err, "provision.InitToken(%q)", label)
	m, err := hsm.OpenModule(module)
	if err != nil {
		return "", err
	}
	defer m.Close()
	ti, err := m.InitToken(label, soPIN)
	if err != nil {
		return "", err
	}
	if err := m.InitUserPIN(hsm.Selector{Serial: ti.Serial}, soPIN, userPIN); err != nil {
		return "", err
	}
	return ti.Serial, nil
}

// oidSerialNumber is the X.520 serialNumber attribute.
var oidSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}

// CustomerKey provisions a logged-in token for customerID and returns the
// certificate and the active binding.
func CustomerKey(ctx context.Context, ca *authority.Authority, db *store.DB, tok *hsm.Token, customerID, actor string) (_ *x509.Certificate, _ store.Binding, err error) {
	tokenSerial := tok.Info().Serial
	defer derrors.Wrap(&err, "provision.CustomerKey(%q, token %s)", customerID, tokenSerial)
	signer, err := tok.GenerateECDSAKey(ctx, KeyLabel, nil)
	if err != nil {
		return nil, store.Binding{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{
		CommonName: customerID,
		ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidSerialNumber, Value: tokenSerial}},
	}}, signer)
	if err != nil {
		return nil, store.Binding{}, fmt.Errorf("signing the CSR on the token: %w", err)
	}
	cert, err := ca.IssueCustomer(ctx, csr, customerID, tokenSerial, actor)
	if err != nil {
		return nil, store.Binding{}, err
	}
	if err := tok.WriteCertificate(ctx, KeyLabel, signer.ID(), cert); err != nil {
		return nil, store.Binding{}, err
	}
	if err := tok.ReplaceCertificate(ctx, CALabel, ca.Customer.Cert.SubjectKeyId, ca.Customer.Cert); err != nil {
		return nil, store.Binding{}, err
	}
	var b store.Binding
	err = db.Transact(ctx, store.TxOptions{}, func(tx pgx.Tx) error {
		var err error
		if b, err = store.CreateBinding(ctx, tx, tokenSerial, customerID, authority.SerialHex(cert), actor); err != nil {
			return err
		}
		if b, err = store.ActivateBinding(ctx, tx, b.ID, time.Now()); err != nil {
			return err
		}
		_, err = store.AppendAudit(ctx, tx, store.AuditRecord{
			Actor: actor, Action: "binding.activate", Subject: tokenSerial, Outcome: store.OutcomeOK,
			Detail: map[string]any{"customer_id": customerID, "cert_serial": b.CertSerial, "path": "direct provisioning"},
		})
		return err
	})
	if err != nil {
		return nil, store.Binding{}, err
	}
	return cert, b, nil
}
