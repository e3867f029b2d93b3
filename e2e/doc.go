// Package e2e runs GridPay end to end: the real programs (adminctl, worker,
// gateway, client, platform-sim) as processes, against a throw-away
// PostgreSQL cluster, SoftHSM2 tokens (the HSM and the customers' USB keys)
// and the Temporal dev server, the way an operator and a customer use them.
// The tests carry the build tag "integration".
package e2e
