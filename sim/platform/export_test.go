package simplatform

import "time"

// WidenRaceWindow makes every posting and prepaid entry pause for d between
// looking up its idempotency key and writing, until the returned function
// is called. Tests of concurrent duplicates use it.
func WidenRaceWindow(d time.Duration) (restore func()) {
	pause := func() { time.Sleep(d) }
	raceWindow.Store(&pause)
	return func() { raceWindow.Store(nil) }
}
