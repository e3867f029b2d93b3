package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gridpay/gridpay/api"
	"github.com/gridpay/gridpay/platform"
)

// paramError is a bad request parameter; its message names it.
type paramError struct {
	name    string
	problem string
}

func (e *paramError) Error() string { return fmt.Sprintf("parameter %q: %s", e.name, e.problem) }

func badParam(name, format string, args ...any) *paramError {
	return &paramError{name: name, problem: fmt.Sprintf(format, args...)}
}

// query parses the query string strictly: only the allowed parameters, each
// at most once. A client that sends anything else has a bug we would rather
// report than silently ignore.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &paramError{name: "query", problem: "malformed query string"}
	}
	for name, vs := range q {
		ok := false
		for _, a := range allowed {
			if name == a {
				ok = true
				break
			}
		}
		if !ok {
			return nil, badParam(clip(name, 32), "unknown parameter")
		}
		if len(vs) > 1 {
			return nil, badParam(name, "given %d times", len(vs))
		}
	}
	return q, nil
}

// defaultConsumptionMonths is the range of a consumption query that names
// none: the last twelve months, this one included.
const defaultConsumptionMonths = 12

// consumptionRange reads from and to (months, inclusive) of a consumption
// query. Without to, the range ends this month (Shanghai); without from, it
// starts defaultConsumptionMonths before to. At most api.MaxMonths.
func consumptionRange(q url.Values, now time.Time) (from, to platform.Period, err error) {
	to = platform.PeriodOf(now)
	if s := q.Get("to"); s != "" {
		if to, err = platform.ParsePeriod(s); err != nil {
			return "", "", badParam("to", "%q is not a month like 2026-10", clip(s, 32))
		}
	}
	from = addMonths(to, -(defaultConsumptionMonths - 1))
	if s := q.Get("from"); s != "" {
		if from, err = platform.ParsePeriod(s); err != nil {
			return "", "", badParam("from", "%q is not a month like 2026-10", clip(s, 32))
		}
	}
	n := monthsBetween(from, to)
	if n < 1 {
		return "", "", badParam("from", "%s is after to (%s)", from, to)
	}
	if n > api.MaxMonths {
		return "", "", badParam("from", "the range %s to %s spans %d months; at most %d", from, to, n, api.MaxMonths)
	}
	return from, to, nil
}

// periodRange reads optional from and to months; both empty mean no bound.
func periodRange(q url.Values) (from, to platform.Period, err error) {
	for _, p := range []struct {
		name string
		dst  *platform.Period
	}{{"from", &from}, {"to", &to}} {
		if s := q.Get(p.name); s != "" {
			if *p.dst, err = platform.ParsePeriod(s); err != nil {
				return "", "", badParam(p.name, "%q is not a month like 2026-10", clip(s, 32))
			}
		}
	}
	if from != "" && to != "" && from > to {
		return "", "", badParam("from", "%s is after to (%s)", from, to)
	}
	return from, to, nil
}

// dateRange reads optional from and to dates; both empty mean no bound.
func dateRange(q url.Values) (from, to platform.Date, err error) {
	for _, p := range []struct {
		name string
		dst  *platform.Date
	}{{"from", &from}, {"to", &to}} {
		if s := q.Get(p.name); s != "" {
			if *p.dst, err = platform.ParseDate(s); err != nil {
				return "", "", badParam(p.name, "%q is not a date like 2026-11-21", clip(s, 32))
			}
		}
	}
	// The fixed YYYY-MM-DD form orders as text.
	if from != "" && to != "" && from > to {
		return "", "", badParam("from", "%s is after to (%s)", from, to)
	}
	return from, to, nil
}

// billStatus reads status: unpaid or all (the default).
func billStatus(q url.Values) (string, error) {
	switch s := q.Get("status"); s {
	case "", "all":
		return "all", nil
	case "unpaid":
		return "unpaid", nil
	default:
		return "", badParam("status", "%q is not unpaid or all", clip(s, 32))
	}
}

// maxBillIDLen bounds a bill ID in a path.
const maxBillIDLen = 64

// checkBillID refuses what cannot be a bill ID: the platform's IDs are
// letters, digits, '-', '_' and '.'.
func checkBillID(id string) error {
	if id == "" {
		return badParam("id", "a bill ID is required: %s{id}", api.PathBill)
	}
	if len(id) > maxBillIDLen {
		return badParam("id", "longer than %d characters", maxBillIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return badParam("id", "%q is not a bill ID (letters, digits, '-', '_', '.')", clip(id, 32))
		}
	}
	return nil
}

func monthIndex(p platform.Period) int {
	y, _ := strconv.Atoi(string(p[:4]))
	m, _ := strconv.Atoi(string(p[5:7]))
	return y*12 + m - 1
}

// monthsBetween counts the months of from..to inclusive (≤ 0 when from is
// after to).
func monthsBetween(from, to platform.Period) int { return monthIndex(to) - monthIndex(from) + 1 }

func addMonths(p platform.Period, n int) platform.Period {
	i := max(monthIndex(p)+n, 0)
	return platform.Period(fmt.Sprintf("%04d-%02d", i/12, i%12+1))
}
