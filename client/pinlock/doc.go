// Package pinlock counts wrong PINs entered on a customer's USB key and
// locks the key after too many in a row, for PKCS#11 tokens that do not
// lock themselves (SoftHSM2 never does; real keys usually do, and their own
// lock applies as well). The desktop client uses it around every login; the
// admin desk (adminctl pin reset) uses ResetToken to unlock a key.
//
// # Where the count lives
//
// On the key: a CKO_DATA object, CKA_TOKEN true, CKA_PRIVATE false,
// CKA_APPLICATION "gridpay" (Application), CKA_LABEL "pin-failures" (Label).
// It is public because the count must be read before the PIN is known and
// written precisely when login failed; SoftHSM2 allows creating, relabelling
// and destroying public objects in a read/write session without login
// (CKA_VALUE itself is read-only once created, so a new value is a new
// object: see hsm.Token.ReplaceData). The count travels with the key from
// one computer to another.
//
// On each computer: a mirror in the state directory, keyed by the token
// serial (<state_dir>/tokens/<serial>.json), so that deleting or rolling
// back the object on the key does not undo the failures this computer saw;
// and an append-only log of wrong PINs (<state_dir>/pin-failures.jsonl)
// whose entries the client reports to the gateway at the next successful
// login, appending a "reported" entry once the gateway has them.
//
// # Record format (version 1)
//
// CKA_VALUE of the object is compact JSON, UTF-8, no trailing newline:
//
//	{"v":1,"failures":2,"locked":false,"reset_generation":1767225600,"updated_at":"2026-01-01T00:00:00Z"}
//
//	v                 1; any other version is refused (the key counts as locked)
//	failures          wrong PINs in a row, ≥ 0
//	locked            true once failures reached the limit (kept even if the limit is raised)
//	reset_generation  integer ≥ 0; raised only by an administrator's reset
//	updated_at        RFC 3339, informational, optional
//
// The local mirror holds the same fields plus "token_serial". Unknown
// fields are ignored; a record that does not parse counts as locked at
// generation 0.
//
// # The rule
//
// The effective record (Merge) is the one with the higher reset_generation;
// at equal generations, the higher failure count and either lock. So an
// administrator's reset, which writes {failures 0, locked false,
// reset_generation max(previous+1, Unix time)} on the key, supersedes the
// local mirror of every computer at the key's next use there, even one that
// recorded the key as locked; anything else only ever raises the count. A
// locked key is refused before the PIN is read. The right PIN sets the
// count to zero on the key and on this computer (a computer that saw
// failures earlier keeps its own count until the key is used there
// successfully: the count only errs towards locking).
//
// # What this protects, and what not
//
// It stops guessing through GridPay's client and makes lost keys lock. It is
// not a boundary against someone who drives the key with other PKCS#11
// software: they can call C_Login directly, or rewrite a public object.
// Real USB keys enforce their own retry counter in hardware, which the
// client also honours (final-try and locked flags).
package pinlock
