// Package derrors annotates errors with the operation that failed.
package derrors

import "fmt"

// Wrap adds the operation to *errp when it is non-nil, keeping the chain for
// errors.Is and errors.As. Use it as the first line of a function:
//
//	defer derrors.Wrap(&err, "DB.InsertCertificate(ctx, %q)", serial)
func Wrap(errp *error, format string, args ...any) {
	if *errp != nil {
		*errp = fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), *errp)
	}
}
