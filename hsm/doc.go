// Package hsm gives GridPay its keys on PKCS#11 devices (the CA's HSM, the
// customers' USB keys, SoftHSM2 in development and tests), over
// github.com/miekg/pkcs11.
//
// # Design
//
// Module registry. A PKCS#11 library may be C_Initialize'd only once per
// process, and login state belongs to the process, not to a session. So
// OpenModule keeps one module per library (keyed by its path with symlinks
// resolved), reference-counted, initialised on first use (tolerating
// CKR_CRYPTOKI_ALREADY_INITIALIZED) and finalised when the last Module handle
// and Token are closed. It also keeps the login per token: the first Token
// logs in, later ones share the login, the last one logs out.
//
// Tokens and sessions. OpenToken selects a token by label and/or serial
// (Selector), logs in once, and returns a Token whose methods run on a pool
// of sessions: each session serves one goroutine at a time, sessions are
// opened lazily up to Options.PoolSize (default 2 × GOMAXPROCS), waiting for
// one honours the context, and a session that reports a fatal error
// (CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_REMOVED, an operation left
// active…) is closed and replaced. One extra session, never handed out,
// holds the login for the Token's lifetime. Close waits for operations in
// progress, closes every session and logs out.
//
// Keys and objects. Keys are named by label and/or CKA_ID (KeyRef) or by an
// RFC 7512 URI (ParseURI). Signer is a crypto.Signer for ECDSA and RSA
// (PKCS #1 v1.5 and PSS); it finds the key once and signs with one
// C_SignInit/C_Sign pair on a pooled session, converting ECDSA's raw r‖s to
// DER. AEAD seals with AES-256-GCM inside the token. Certificates and data
// objects can be written, read, replaced and deleted.
//
// Errors. Every failed PKCS#11 call becomes an *Error carrying the function
// and the CKR code; errors.Is matches it against the sentinels (ErrWrongPIN,
// ErrPINLocked, ErrTokenAbsent…) and against pkcs11.Error values. Errors
// name the operation, the token and the key reference.
//
// What this package never does: generate or import a private or secret
// key that is extractable or not sensitive, read a key's value, keep a PIN
// after login (PINs are []byte, the caller zeroes them; see Zero), or put a
// PIN, key material, plaintext or signature input in an error or a log.
// Logging is optional (Options.Logger, zap).
//
// Tests: unit tests run against a fake of the few *pkcs11.Ctx methods used
// (the unexported p11 interface); integration tests (build tag
// "integration") run against SoftHSM2 through internal/testenv.
package hsm
