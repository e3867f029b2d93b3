// Package simplatform simulates the power company's payment platform web
// service for development and tests: a server implementing the contract of
// package platform (platform/openapi.yaml) on PostgreSQL, with a seeded,
// deterministic data generator.
//
// What it simulates:
//
//   - Customers of large industry (two-part tariff) and general commerce
//     (single-part), their metering points, monthly time-of-use
//     consumption and monthly bills (tariff.go documents the prices).
//   - Bills issued on the 1st of the following month, due on the 25th;
//     late fees accruing daily past the due date under Article 98 of the
//     Power Supply Business Rules (latefee.go), computed as of the
//     simulator's "today".
//   - Payments received: posting idempotent by reference, allocation
//     checks, reversal; a prepaid account with idempotent, keyed debits and
//     credits. Every change is one transaction (ledger.go).
//   - The paper's firewall: the simulator has its own CA and server
//     certificate (made on first start in the state directory; GridPay
//     trusts ca.pem) and admits, at the TLS handshake, only client
//     certificates of GridPay's services CA naming an admitted service
//     (gateway, worker). Anything else is refused and logged.
//
// The simulator keeps its tables in the PostgreSQL schema platform_sim,
// created and migrated at start, so it can share GridPay's database.
//
// Tests use Start and the Server's methods (Seed, FindCustomers,
// SetUnavailable, Service); the program is sim/platform/cmd/platform-sim.
package simplatform
