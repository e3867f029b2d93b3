package app

import (
	"context"
	"fmt"
	"sort"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
)

// RegisterSearchAttributes adds the custom search attributes that are
// missing from the namespace and returns the names it added. Existing ones
// are left alone; one registered with another type is an error naming it.
func RegisterSearchAttributes(ctx context.Context, tc client.Client, namespace string, want map[string]enumspb.IndexedValueType) ([]string, error) {
	op := tc.OperatorService()
	have, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return nil, fmt.Errorf("%w: listing search attributes: %w", ErrTemporalUnavailable, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range want {
		got, ok := have.CustomAttributes[name]
		if !ok {
			missing[name] = typ
			continue
		}
		if got != typ {
			return nil, fmt.Errorf("search attribute %s is registered as %s, GridPay needs %s", name, got, typ)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	if _, err := op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	}); err != nil {
		return nil, fmt.Errorf("adding search attributes: %w", err)
	}
	names := make([]string, 0, len(missing))
	for n := range missing {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}
