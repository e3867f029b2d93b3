package hsm

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/pkcs11"
)

// CertObject is an X.509 certificate object on a token.
type CertObject struct {
	Label string
	ID    []byte // links the certificate to the key with the same CKA_ID
	Cert  *x509.Certificate
}

func certTemplate(ref KeyRef) []*pkcs11.Attribute {
	return append(ref.template(pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509))
}

// WriteCertificate stores cert as a public token object labelled label,
// with CKA_ID id (use the key's ID). A certificate with the same label and
// id already there gives ErrObjectExists; use ReplaceCertificate.
func (t *Token) WriteCertificate(ctx context.Context, label string, id []byte, cert *x509.Certificate) (err error) {
	ref := KeyRef{Label: label, ID: id}
	defer wrapErr(&err, "WriteCertificate(%s)", ref)
	if label == "" || len(id) == 0 || cert == nil {
		return errors.New("a certificate object needs a label, an id and a certificate")
	}
	t.createMu.Lock()
	defer t.createMu.Unlock()
	hs, err := t.findObjects(ctx, certTemplate(ref), 1)
	if err != nil {
		return err
	}
	if len(hs) > 0 {
		return fmt.Errorf("%w: a certificate with %s is on token %q", ErrObjectExists, ref, t.info.Label)
	}
	_, err = t.createCert(ctx, label, id, cert)
	return err
}

func (t *Token) createCert(ctx context.Context, label string, id []byte, cert *x509.Certificate) (pkcs11.ObjectHandle, error) {
	serial, err := asn1.Marshal(cert.SerialNumber)
	if err != nil {
		return 0, fmt.Errorf("encoding serial number: %w", err)
	}
	return t.create(ctx, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
		pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, cert.RawSubject),
		pkcs11.NewAttribute(pkcs11.CKA_ISSUER, cert.RawIssuer),
		pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, serial),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, cert.Raw),
	})
}

type certHandle struct {
	CertObject
	h pkcs11.ObjectHandle
}

func (t *Token) certs(ctx context.Context, ref KeyRef) ([]certHandle, error) {
	hs, err := t.findObjects(ctx, certTemplate(ref), 256)
	if err != nil {
		return nil, err
	}
	out := make([]certHandle, 0, len(hs))
	for _, h := range hs {
		v, err := t.attrs(ctx, h, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_VALUE)
		if err != nil {
			return nil, err
		}
		c, err := x509.ParseCertificate(v[2])
		if err != nil {
			return nil, fmt.Errorf("certificate object %q on token %q: %w", v[0], t.info.Label, err)
		}
		out = append(out, certHandle{CertObject{Label: string(v[0]), ID: v[1], Cert: c}, h})
	}
	// Newest first: during ReplaceCertificate the old and new certificate
	// coexist for a moment, and the new one is the one that counts.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Cert.NotBefore.After(out[j].Cert.NotBefore) })
	return out, nil
}

// Certificates lists the certificates ref names (all of them for a zero
// ref), newest NotBefore first.
func (t *Token) Certificates(ctx context.Context, ref KeyRef) (_ []CertObject, err error) {
	defer wrapErr(&err, "Certificates(%s)", ref)
	hs, err := t.certs(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := make([]CertObject, len(hs))
	for i := range hs {
		out[i] = hs[i].CertObject
	}
	return out, nil
}

// Certificate returns the newest certificate ref names, or
// ErrObjectNotFound.
func (t *Token) Certificate(ctx context.Context, ref KeyRef) (_ *x509.Certificate, err error) {
	defer wrapErr(&err, "Certificate(%s)", ref)
	hs, err := t.certs(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("%w: no certificate with %s on token %q", ErrObjectNotFound, ref, t.info.Label)
	}
	return hs[0].Cert, nil
}

// ReplaceCertificate puts cert in place of the certificates with this
// label and id (creating it if there are none).
//
// It creates the new object first and then destroys the old ones: the
// certificate's CKA_VALUE, CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER are
// not modifiable on most tokens, so an in-place update is not available, and
// this order never leaves the token without a certificate: an interruption
// leaves both, and readers take the newest (see Certificates).
func (t *Token) ReplaceCertificate(ctx context.Context, label string, id []byte, cert *x509.Certificate) (err error) {
	ref := KeyRef{Label: label, ID: id}
	defer wrapErr(&err, "ReplaceCertificate(%s)", ref)
	if label == "" || len(id) == 0 || cert == nil {
		return errors.New("a certificate object needs a label, an id and a certificate")
	}
	t.createMu.Lock()
	defer t.createMu.Unlock()
	old, err := t.findObjects(ctx, certTemplate(ref), 256)
	if err != nil {
		return err
	}
	if _, err := t.createCert(ctx, label, id, cert); err != nil {
		return err
	}
	if len(old) == 0 {
		return nil
	}
	return t.destroy(context.WithoutCancel(ctx), old...)
}

// DeleteCertificate destroys the certificates ref names; none gives
// ErrObjectNotFound.
func (t *Token) DeleteCertificate(ctx context.Context, ref KeyRef) (err error) {
	defer wrapErr(&err, "DeleteCertificate(%s)", ref)
	if ref.IsZero() {
		return errors.New("refusing to delete every certificate: give a label or an id")
	}
	t.createMu.Lock()
	defer t.createMu.Unlock()
	hs, err := t.findObjects(ctx, certTemplate(ref), 256)
	if err != nil {
		return err
	}
	if len(hs) == 0 {
		return fmt.Errorf("%w: no certificate with %s on token %q", ErrObjectNotFound, ref, t.info.Label)
	}
	return t.destroy(ctx, hs...)
}

// DataObject is a CKO_DATA object: an application's named blob. Private
// objects can only be read after login; public ones by anyone holding the
// token.
type DataObject struct {
	Application string // CKA_APPLICATION
	Label       string // CKA_LABEL
	Value       []byte // CKA_VALUE
	Private     bool   // CKA_PRIVATE
}

func dataTemplate(application, label string) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_DATA),
		pkcs11.NewAttribute(pkcs11.CKA_APPLICATION, application),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
}

// pendingSuffix marks the label of a data object that ReplaceData has
// written but not yet renamed into place.
const pendingSuffix = "~replacing"

// dataObj is a data object found by name; pending says it still carries the
// pending label (a replacement interrupted after its commit point).
type dataObj struct {
	h       pkcs11.ObjectHandle
	pending bool
}

// resolveData finds the current object named (application, label) and any
// leftover pending objects that are not current. The rule that makes
// ReplaceData atomic: while an object with the plain label exists, it is
// current and pending ones are debris; once it is gone, the pending one is.
func (t *Token) resolveData(ctx context.Context, application, label string) (cur dataObj, debris []pkcs11.ObjectHandle, err error) {
	plain, err := t.findObjects(ctx, dataTemplate(application, label), 2)
	if err != nil {
		return dataObj{}, nil, err
	}
	pending, err := t.findObjects(ctx, dataTemplate(application, label+pendingSuffix), 16)
	if err != nil {
		return dataObj{}, nil, err
	}
	switch {
	case len(plain) > 1:
		return dataObj{}, nil, fmt.Errorf("%d data objects %q of application %q on token %q", len(plain), label, application, t.info.Label)
	case len(plain) == 1:
		return dataObj{h: plain[0]}, pending, nil
	case len(pending) == 1:
		return dataObj{h: pending[0], pending: true}, nil, nil
	case len(pending) > 1:
		return dataObj{}, nil, fmt.Errorf("%d pending replacements of data object %q of application %q on token %q", len(pending), label, application, t.info.Label)
	}
	return dataObj{}, nil, fmt.Errorf("%w: no data object %q of application %q on token %q", ErrObjectNotFound, label, application, t.info.Label)
}

func checkDataName(application, label string, value []byte) error {
	if application == "" || label == "" {
		return errors.New("a data object needs an application and a label")
	}
	if strings.HasSuffix(label, pendingSuffix) {
		return fmt.Errorf("data object labels ending in %q are reserved", pendingSuffix)
	}
	// An empty CKA_VALUE reaches the module as a NULL pointer, which some
	// modules (SoftHSM2 built with assertions) do not survive.
	if len(value) == 0 {
		return errors.New("a data object needs a non-empty value")
	}
	return nil
}

func (t *Token) createData(ctx context.Context, application, label string, private bool, value []byte) (pkcs11.ObjectHandle, error) {
	return t.create(ctx, append(dataTemplate(application, label),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, private),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, value),
	))
}

func (t *Token) setLabel(ctx context.Context, h pkcs11.ObjectHandle, label string) error {
	return t.pool.do(ctx, func(sh pkcs11.SessionHandle) error {
		return p11err("C_SetAttributeValue", t.mod.ctx.SetAttributeValue(sh, h,
			[]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}))
	})
}

// WriteData stores a new data object; one with the same application and
// label gives ErrObjectExists.
func (t *Token) WriteData(ctx context.Context, obj DataObject) (err error) {
	defer wrapErr(&err, "WriteData(%q, %q)", obj.Application, obj.Label)
	if err := checkDataName(obj.Application, obj.Label, obj.Value); err != nil {
		return err
	}
	t.createMu.Lock()
	defer t.createMu.Unlock()
	_, debris, err := t.resolveData(ctx, obj.Application, obj.Label)
	switch {
	case err == nil:
		return fmt.Errorf("%w: data object %q of application %q is on token %q", ErrObjectExists, obj.Label, obj.Application, t.info.Label)
	case !errors.Is(err, ErrObjectNotFound):
		return err
	}
	if len(debris) > 0 {
		if err := t.destroy(ctx, debris...); err != nil {
			return err
		}
	}
	_, err = t.createData(ctx, obj.Application, obj.Label, obj.Private, obj.Value)
	return err
}

// ReadData reads a data object, or gives ErrObjectNotFound.
func (t *Token) ReadData(ctx context.Context, application, label string) (_ DataObject, err error) {
	defer wrapErr(&err, "ReadData(%q, %q)", application, label)
	cur, _, err := t.resolveData(ctx, application, label)
	if err != nil {
		return DataObject{}, err
	}
	v, err := t.attrs(ctx, cur.h, pkcs11.CKA_VALUE, pkcs11.CKA_PRIVATE)
	if err != nil {
		return DataObject{}, err
	}
	return DataObject{Application: application, Label: label, Value: v[0], Private: boolAttr(v[1])}, nil
}

// ReplaceData gives an existing data object a new value, keeping its
// CKA_PRIVATE setting. Readers see the old value or the new one, never
// neither or both, even if the process dies half-way.
//
// PKCS#11 does not let CKA_VALUE of a data object be modified (SoftHSM2
// answers CKR_ATTRIBUTE_READ_ONLY), but it does allow CKA_LABEL to be. So
// the new value is created under a pending label, the old object is
// destroyed (the commit point: from then on the pending object is current,
// see resolveData), and the new object is renamed into place. An interrupted
// replacement is finished or cleaned up by the next call.
func (t *Token) ReplaceData(ctx context.Context, application, label string, value []byte) (err error) {
	defer wrapErr(&err, "ReplaceData(%q, %q)", application, label)
	if err := checkDataName(application, label, value); err != nil {
		return err
	}
	t.createMu.Lock()
	defer t.createMu.Unlock()
	// Once started, finish: a cancelled context half-way would leave work
	// for the next call.
	ctx = context.WithoutCancel(ctx)
	cur, debris, err := t.resolveData(ctx, application, label)
	if err != nil {
		return err
	}
	if len(debris) > 0 {
		if err := t.destroy(ctx, debris...); err != nil {
			return err
		}
	}
	if cur.pending {
		if err := t.setLabel(ctx, cur.h, label); err != nil {
			return err
		}
	}
	v, err := t.attrs(ctx, cur.h, pkcs11.CKA_PRIVATE)
	if err != nil {
		return err
	}
	next, err := t.createData(ctx, application, label+pendingSuffix, boolAttr(v[0]), value)
	if err != nil {
		return err
	}
	if err := t.destroy(ctx, cur.h); err != nil {
		_ = t.destroy(ctx, next)
		return err
	}
	return t.setLabel(ctx, next, label)
}

// DeleteData destroys a data object (and any interrupted replacement of
// it), or gives ErrObjectNotFound.
func (t *Token) DeleteData(ctx context.Context, application, label string) (err error) {
	defer wrapErr(&err, "DeleteData(%q, %q)", application, label)
	t.createMu.Lock()
	defer t.createMu.Unlock()
	cur, debris, err := t.resolveData(ctx, application, label)
	if err != nil {
		return err
	}
	return t.destroy(ctx, append(debris, cur.h)...)
}
