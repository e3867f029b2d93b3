package hsm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
)

// fakeCtx is an in-memory stand-in for a PKCS#11 module: one token, PIN
// checks, objects matched by template, and ECDSA signing with a Go key. It
// records what a real module would not tell: concurrent use of a session.
type fakeCtx struct {
	mu sync.Mutex

	initErr   error
	slot      uint
	info      pkcs11.TokenInfo
	userPIN   string
	soPIN     string
	loggedIn  bool
	loginErrs []error // returned by the next C_Login calls, first first
	badPINs   int

	nextSession pkcs11.SessionHandle
	sessions    map[pkcs11.SessionHandle]*fakeSession
	opened      int
	logins      int
	logouts     int
	finalized   int

	objects    map[pkcs11.ObjectHandle]map[uint][]byte
	nextObject pkcs11.ObjectHandle
	keys       map[pkcs11.ObjectHandle]*ecdsa.PrivateKey
	sensitive  map[uint]bool

	signErrs []error // returned by the next C_Sign calls
	// concurrent counts calls that found their session already busy.
	concurrent int
}

type fakeSession struct {
	busy     bool
	signKey  pkcs11.ObjectHandle
	signing  bool
	findList []pkcs11.ObjectHandle
	finding  bool
}

func newFake() *fakeCtx {
	return &fakeCtx{
		slot: 7,
		info: pkcs11.TokenInfo{
			Label: "fake", SerialNumber: "f00d", ManufacturerID: "GridPay", Model: "fake",
			Flags: pkcs11.CKF_TOKEN_INITIALIZED | pkcs11.CKF_USER_PIN_INITIALIZED | pkcs11.CKF_LOGIN_REQUIRED,
		},
		userPIN:     "123456",
		soPIN:       "87654321",
		nextSession: 100,
		sessions:    map[pkcs11.SessionHandle]*fakeSession{},
		objects:     map[pkcs11.ObjectHandle]map[uint][]byte{},
		nextObject:  1,
		keys:        map[pkcs11.ObjectHandle]*ecdsa.PrivateKey{},
		sensitive:   map[uint]bool{pkcs11.CKA_VALUE: true},
	}
}

var fakes sync.Map // module path → *fakeCtx

// The fake loader serves registered fake paths and passes every other path
// to the real one, which the integration tests (same test binary) use.
func init() {
	real := loadModule
	loadModule = func(path string) (p11, error) {
		if f, ok := fakes.Load(path); ok {
			return f.(*fakeCtx), nil
		}
		return real(path)
	}
}

// installFake registers f under a fresh module file and returns its path.
func installFake(t *testing.T, f *fakeCtx) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "libfake.so")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	fakes.Store(real, f)
	return path
}

func ckr(code uint) error { return pkcs11.Error(code) }

// enter marks sh busy for the length of one call and notes overlaps.
func (f *fakeCtx) enter(sh pkcs11.SessionHandle) (*fakeSession, func(), error) {
	f.mu.Lock()
	s := f.sessions[sh]
	if s == nil {
		f.mu.Unlock()
		return nil, func() {}, ckr(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	if s.busy {
		f.concurrent++
	}
	s.busy = true
	f.mu.Unlock()
	return s, func() {
		f.mu.Lock()
		s.busy = false
		f.mu.Unlock()
	}, nil
}

func (f *fakeCtx) Initialize(...pkcs11.InitializeOption) error { return f.initErr }
func (f *fakeCtx) Finalize() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finalized++
	return nil
}
func (f *fakeCtx) Destroy() {}

func (f *fakeCtx) GetSlotList(bool) ([]uint, error) { return []uint{f.slot}, nil }
func (f *fakeCtx) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	if slot != f.slot {
		return pkcs11.TokenInfo{}, ckr(pkcs11.CKR_SLOT_ID_INVALID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.info, nil
}
func (f *fakeCtx) InitToken(uint, string, string) error {
	return ckr(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (f *fakeCtx) InitPIN(pkcs11.SessionHandle, string) error {
	return ckr(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (f *fakeCtx) SetPIN(_ pkcs11.SessionHandle, old, new string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if old != f.userPIN {
		return ckr(pkcs11.CKR_PIN_INCORRECT)
	}
	f.userPIN = new
	return nil
}

func (f *fakeCtx) OpenSession(slot uint, _ uint) (pkcs11.SessionHandle, error) {
	if slot != f.slot {
		return 0, ckr(pkcs11.CKR_SLOT_ID_INVALID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextSession++
	f.opened++
	f.sessions[f.nextSession] = &fakeSession{}
	return f.nextSession, nil
}

func (f *fakeCtx) CloseSession(sh pkcs11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sessions[sh] == nil {
		return ckr(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	delete(f.sessions, sh)
	if len(f.sessions) == 0 {
		f.loggedIn = false // PKCS#11: closing the last session logs out
	}
	return nil
}

func (f *fakeCtx) openSessions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

func (f *fakeCtx) Login(sh pkcs11.SessionHandle, userType uint, pin string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins++
	if len(f.loginErrs) > 0 {
		err := f.loginErrs[0]
		f.loginErrs = f.loginErrs[1:]
		return err
	}
	if f.loggedIn {
		return ckr(pkcs11.CKR_USER_ALREADY_LOGGED_IN)
	}
	if f.badPINs >= 3 {
		return ckr(pkcs11.CKR_PIN_LOCKED)
	}
	want := f.userPIN
	if userType == pkcs11.CKU_SO {
		want = f.soPIN
	}
	if pin != want {
		f.badPINs++
		return ckr(pkcs11.CKR_PIN_INCORRECT)
	}
	f.badPINs = 0
	f.loggedIn = true
	return nil
}

func (f *fakeCtx) Logout(pkcs11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logouts++
	if !f.loggedIn {
		return ckr(pkcs11.CKR_USER_NOT_LOGGED_IN)
	}
	f.loggedIn = false
	return nil
}

// addECKey puts a P-256 key pair on the fake token.
func (f *fakeCtx) addECKey(t *testing.T, label string, id []byte) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	params, _ := curveParams(elliptic.P256())
	point, _ := k.PublicKey.Bytes()
	wrapped := append([]byte{0x04, byte(len(point))}, point...)
	f.mu.Lock()
	defer f.mu.Unlock()
	priv := f.nextObject
	f.objects[priv] = map[uint][]byte{
		pkcs11.CKA_CLASS:    ulong(pkcs11.CKO_PRIVATE_KEY),
		pkcs11.CKA_TOKEN:    {1},
		pkcs11.CKA_KEY_TYPE: ulong(pkcs11.CKK_EC),
		pkcs11.CKA_LABEL:    []byte(label),
		pkcs11.CKA_ID:       id,
		pkcs11.CKA_VALUE:    k.D.Bytes(),
	}
	f.keys[priv] = k
	pub := priv + 1
	f.objects[pub] = map[uint][]byte{
		pkcs11.CKA_CLASS:     ulong(pkcs11.CKO_PUBLIC_KEY),
		pkcs11.CKA_TOKEN:     {1},
		pkcs11.CKA_KEY_TYPE:  ulong(pkcs11.CKK_EC),
		pkcs11.CKA_LABEL:     []byte(label),
		pkcs11.CKA_ID:        id,
		pkcs11.CKA_EC_PARAMS: params,
		pkcs11.CKA_EC_POINT:  wrapped,
	}
	f.nextObject += 2
	return k
}

func ulong(v uint) []byte { return pkcs11.NewAttribute(0, v).Value }

func (f *fakeCtx) CreateObject(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	_, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	obj := map[uint][]byte{}
	for _, a := range temp {
		obj[a.Type] = a.Value
	}
	h := f.nextObject
	f.nextObject++
	f.objects[h] = obj
	return h, nil
}

// CopyObject is refused, as by a token whose keys are not CKA_COPYABLE:
// signers then use the token object itself.
func (f *fakeCtx) CopyObject(sh pkcs11.SessionHandle, _ pkcs11.ObjectHandle, _ []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	_, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return 0, err
	}
	return 0, ckr(pkcs11.CKR_ACTION_PROHIBITED)
}

func (f *fakeCtx) DestroyObject(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle) error {
	_, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.objects[o] == nil {
		return ckr(pkcs11.CKR_OBJECT_HANDLE_INVALID)
	}
	delete(f.objects, o)
	return nil
}

// dataObjects lists the fake's CKO_DATA objects as label → value.
func (f *fakeCtx) dataObjects() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for _, obj := range f.objects {
		if bytes.Equal(obj[pkcs11.CKA_CLASS], ulong(pkcs11.CKO_DATA)) {
			out[string(obj[pkcs11.CKA_LABEL])] = string(obj[pkcs11.CKA_VALUE])
		}
	}
	return out
}

func (f *fakeCtx) GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	_, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	obj := f.objects[o]
	if obj == nil {
		return nil, ckr(pkcs11.CKR_OBJECT_HANDLE_INVALID)
	}
	out := make([]*pkcs11.Attribute, len(a))
	for i, at := range a {
		if f.sensitive[at.Type] && f.keys[o] != nil {
			return nil, ckr(pkcs11.CKR_ATTRIBUTE_SENSITIVE)
		}
		v, ok := obj[at.Type]
		if !ok {
			return nil, ckr(pkcs11.CKR_ATTRIBUTE_TYPE_INVALID)
		}
		out[i] = pkcs11.NewAttribute(at.Type, v)
	}
	return out, nil
}

// SetAttributeValue allows CKA_LABEL only, like SoftHSM2 for data objects.
func (f *fakeCtx) SetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) error {
	_, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	obj := f.objects[o]
	if obj == nil {
		return ckr(pkcs11.CKR_OBJECT_HANDLE_INVALID)
	}
	for _, at := range a {
		if at.Type != pkcs11.CKA_LABEL {
			return ckr(pkcs11.CKR_ATTRIBUTE_READ_ONLY)
		}
	}
	for _, at := range a {
		obj[at.Type] = at.Value
	}
	return nil
}

func (f *fakeCtx) FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error {
	s, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.finding {
		return ckr(pkcs11.CKR_OPERATION_ACTIVE)
	}
	s.finding = true
	s.findList = nil
	for h := pkcs11.ObjectHandle(1); h < f.nextObject; h++ {
		obj := f.objects[h]
		if obj == nil {
			continue
		}
		match := true
		for _, at := range temp {
			if !bytes.Equal(obj[at.Type], at.Value) {
				match = false
			}
		}
		if match {
			s.findList = append(s.findList, h)
		}
	}
	return nil
}

func (f *fakeCtx) FindObjects(sh pkcs11.SessionHandle, max int) ([]pkcs11.ObjectHandle, bool, error) {
	s, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(max, len(s.findList))
	out := s.findList[:n]
	s.findList = s.findList[n:]
	return out, false, nil
}

func (f *fakeCtx) FindObjectsFinal(sh pkcs11.SessionHandle) error {
	s, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s.finding = false
	return nil
}

func (f *fakeCtx) GenerateKey(pkcs11.SessionHandle, []*pkcs11.Mechanism, []*pkcs11.Attribute) (pkcs11.ObjectHandle, error) {
	return 0, ckr(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (f *fakeCtx) GenerateKeyPair(pkcs11.SessionHandle, []*pkcs11.Mechanism, []*pkcs11.Attribute, []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	return 0, 0, ckr(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}

func (f *fakeCtx) SignInit(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	s, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if s.signing {
		return ckr(pkcs11.CKR_OPERATION_ACTIVE)
	}
	if f.keys[o] == nil {
		return ckr(pkcs11.CKR_KEY_HANDLE_INVALID)
	}
	if len(m) != 1 || m[0].Mechanism != pkcs11.CKM_ECDSA {
		return ckr(pkcs11.CKR_MECHANISM_INVALID)
	}
	s.signing, s.signKey = true, o
	return nil
}

func (f *fakeCtx) Sign(sh pkcs11.SessionHandle, msg []byte) ([]byte, error) {
	s, done, err := f.enter(sh)
	defer done()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if !s.signing {
		f.mu.Unlock()
		return nil, ckr(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
	}
	s.signing = false
	if len(f.signErrs) > 0 {
		err := f.signErrs[0]
		f.signErrs = f.signErrs[1:]
		f.mu.Unlock()
		return nil, err
	}
	k := f.keys[s.signKey]
	f.mu.Unlock()
	r, ss, err := ecdsa.Sign(rand.Reader, k, msg)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	ss.FillBytes(raw[32:])
	return raw, nil
}

func (f *fakeCtx) EncryptInit(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error {
	return ckr(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (f *fakeCtx) Encrypt(pkcs11.SessionHandle, []byte) ([]byte, error) {
	return nil, ckr(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (f *fakeCtx) DecryptInit(pkcs11.SessionHandle, []*pkcs11.Mechanism, pkcs11.ObjectHandle) error {
	return ckr(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}
func (f *fakeCtx) Decrypt(pkcs11.SessionHandle, []byte) ([]byte, error) {
	return nil, ckr(pkcs11.CKR_FUNCTION_NOT_SUPPORTED)
}

var _ p11 = (*fakeCtx)(nil)
