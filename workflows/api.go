// Package workflows holds GridPay's Temporal workflows: deterministic
// orchestration only. Every side effect is an activity (package
// activities), referred to through a nil pointer of its struct so that
// ExecuteActivity stays type-checked.
package workflows

// TaskQueue is the default task queue of GridPay's workers (temporal.task_queue).
const TaskQueue = "gridpay"

// CRLScheduleID is the Temporal schedule that republishes the CRLs.
const CRLScheduleID = "crl-publish"
