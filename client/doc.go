// Command client is GridPay's desktop program for the power company's large
// customers: it unlocks the customer's USB key (a PKCS#11 token) with its
// PIN, checks the certificate on it, and queries GridPay's gateway over
// mutually authenticated TLS 1.3 whose client key never leaves the token.
//
//	client login          verify the key, show who you are and any arrears alerts
//	client info           profile and metering points
//	client consumption    [--from YYYY-MM --to YYYY-MM] peak/flat/valley/total kWh per month
//	client bills          [--all] [--from --to] | --id <bill>
//	client arrears        overdue amount, late fees, alerts
//	client history        [--from YYYY-MM-DD --to YYYY-MM-DD] payments received, online payments, loads
//	client pay            --bill <id>... | --prepay <yuan> | --status <key>: pay through UnionPay
//	client load           --amount <yuan>: the signed load exchange onto the key's wallet (圈存)
//	client wallet         balance and sequence on the key, the local signed load log
//	client card           issue | balance | transfer --amount: the meter card bound to the key
//	client ui             the same in a local web window (127.0.0.1, opened in the browser)
//
// Every command takes --json (stable output: the api types, or for login
// and info the loginOutput and infoOutput structs) and the global flags
// --config, --token-serial, --token-label, --allow-final-try, --log-level.
// Human output is aligned tables; amounts are money.Fen.Display (¥1,234.56),
// business dates are shown as the gateway gives them (Asia/Shanghai), and
// instants (certificate expiry) in Asia/Shanghai time. Warnings and the
// progress indicator go to stderr, so stdout carries only the result.
// Arrears alerts are shown by login and arrears only: the other commands
// make exactly one query, and their output stays what was asked for.
//
// # One run
//
//  1. Configuration (config.Client: file, GRIDPAY_* environment, flags) and
//     ca_file are loaded first, so a mistake there never costs a PIN try.
//  2. The PKCS#11 module (token.module) is loaded and the key selected:
//     token.label / token.serial (--token-label / --token-serial) if set;
//     otherwise the only initialised token present. None: "insert your USB
//     key"; several: they are listed and --token-serial asked for.
//  3. PIN safety (package client/pinlock): the failure record is read from
//     the key and from the state directory; a locked key is refused before
//     the PIN is read. The key's own flags are honoured: locked → refused;
//     final try → refused unless --allow-final-try; count low → a warning.
//     Earlier wrong PINs are announced with the tries left.
//  4. The PIN comes from token.pin.file or the environment variable
//     GRIDPAY_TOKEN_PIN; when neither is set it is asked on the terminal
//     without echo, and refused (exit 3) when stdin is not a terminal, so a
//     script never hangs. It is zeroed right after C_Login and never logged.
//  5. A wrong PIN is counted (on the key, in the local mirror, in the local
//     log) and reported as "wrong PIN: 3 tries left before the key is
//     locked"; the last one as "the key is locked after 5 wrong PINs; ask
//     the power company to reset it". The right PIN sets the count to zero.
//  6. The certificate labelled token.key_label and the customer CA
//     certificate on the key (the certificate object whose subject is the
//     leaf's issuer and whose key signed it) are read and checked before any
//     connection: the leaf matches the key, names this token's serial, is
//     within its validity (expired or not yet valid: refused; expiring
//     within 30 days: a warning) and chains to ca_file (GridPay's root.pem)
//     for client authentication.
//  7. TLS 1.3 to gateway_url: the gateway's certificate must chain to
//     ca_file (it comes through the services CA, which the gateway sends);
//     the client presents the leaf and the customer CA certificate and signs
//     with the key on the token (hsm.Signer). One connection serves the run.
//  8. Wrong PINs not yet reported are sent to the gateway
//     (POST /v1/events/pin-failures) and marked reported once accepted.
//  9. The command's query; a non-2xx answer's api.Error message is shown.
//
// # PIN-failure lock: format, location, reset
//
// SoftHSM2 never locks a PIN, so the client keeps its own count of wrong
// PINs in a row per key and locks after max_pin_failures (default 5).
//
// On the key, a public data object (CKO_DATA, CKA_TOKEN true, CKA_PRIVATE
// false, CKA_APPLICATION "gridpay", CKA_LABEL "pin-failures") holds, as
// compact JSON:
//
//	{"v":1,"failures":2,"locked":false,"reset_generation":1767225600,"updated_at":"2026-01-01T00:00:00Z"}
//
// It is public because it is read before the PIN is known and written when
// login has just failed. SoftHSM2 allows an unauthenticated read/write
// session to create, relabel and destroy public objects (checked by the
// integration test); CKA_VALUE is read-only once created, so a new value
// is a new object, swapped in as hsm.Token.ReplaceData does. A key that
// refuses such writes (some real cards want a login to create objects)
// keeps the count on the computer only, with a warning in the log.
//
// On the computer, in state_dir (default ~/.local/state/gridpay; "~" is
// expanded; mode 0700):
//
//	tokens/<token serial>.json  {"token_serial":"…", "v":1, "failures":…, "locked":…, "reset_generation":…}
//	pin-failures.jsonl          append-only: {"event":"wrong_pin","at":…,"token_serial":…,"seq":N,"count":…,"locked":…}
//	                            and {"event":"reported","at":…,"token_serial":…,"through_seq":N}
//
// No PIN is ever written. The effective record is the one with the higher
// reset_generation; at equal generations the higher count and either lock
// (pinlock.Merge). So failures travel with the key to other computers,
// deleting or rolling back the object on the key does not undo what this
// computer saw, and an unreadable record counts as locked.
//
// Reset (adminctl pin reset, with the key on the administrator's desk):
// pinlock.ResetToken on the logged-in hsm.Token writes {failures 0, locked
// false, reset_generation max(previous+1, Unix time)}. At the key's next use
// on any computer the higher generation supersedes that computer's local
// record, locked or not. adminctl imports github.com/gridpay/gridpay/client/pinlock
// for this; nothing else is needed on the admin side.
//
// The lock stops guessing through this client and makes a lost key lock;
// it is no barrier against other PKCS#11 software driving the key directly,
// which is why real USB keys' own hardware retry counters (reported through
// the token flags) are honoured too.
//
// # Exit codes
//
// 0 success; 2 usage (bad flags, several keys present); 3 configuration
// (invalid file, missing ca_file or PKCS#11 module, no PIN source without a
// terminal); 4 authentication (wrong PIN, locked key, final try refused,
// certificate on the key expired / not yet valid / not GridPay's, gateway
// certificate untrusted, and the gateway's refusals no_certificate,
// unknown_ca, certificate_expired, certificate_revoked, certificate_invalid,
// not_bound); 5 not found (not_found); 6 unavailable (no USB key inserted,
// gateway unreachable or timing out, unavailable, rate_limited); 1 anything
// else (internal, unsupported_version…). invalid_request is 2.
package main
