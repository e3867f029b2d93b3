// Package testenv starts the real components the integration tests run
// against: a throw-away PostgreSQL cluster, SoftHSM2 token directories and the
// Temporal dev server, each on loopback and inside a temporary folder.
//
// Integration tests carry the build tag "integration" and are run by
// `make test`, which installs what they need first. They never skip: a missing
// component is a failure, because a skipped test proves nothing.
package testenv
