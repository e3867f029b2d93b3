package workflows

import (
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Search attributes operators filter by in the Temporal Web UI, e.g.
// TokenSerial = "9748c46a5686bb2c" or OperationKind = "binding" AND
// OperationStatus = "awaiting-proof".
var (
	AttrCustomerID = temporal.NewSearchAttributeKeyKeyword("CustomerID")
	AttrToken      = temporal.NewSearchAttributeKeyKeyword("TokenSerial")
	AttrKind       = temporal.NewSearchAttributeKeyKeyword("OperationKind")
	AttrStatus     = temporal.NewSearchAttributeKeyKeyword("OperationStatus")
	// Payments: the UnionPay order and the bills paid, e.g. OrderID =
	// "GP0f3a…" or BillIDs = "B20260100000002".
	AttrOrderID = temporal.NewSearchAttributeKeyKeyword("OrderID")
	AttrBillIDs = temporal.NewSearchAttributeKeyKeywordList("BillIDs")
)

// SearchAttributes lists the custom search attributes with their types, for
// registration (adminctl temporal setup, worker start, test servers).
func SearchAttributes() map[string]enumspb.IndexedValueType {
	out := map[string]enumspb.IndexedValueType{}
	for _, k := range []temporal.SearchAttributeKeyKeyword{AttrCustomerID, AttrToken, AttrKind, AttrStatus} {
		out[k.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	}
	out[AttrOrderID.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD
	out[AttrBillIDs.GetName()] = enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST
	return out
}

// setStatus records a workflow's business status for the Web UI. A failure
// to upsert is logged, never fatal: the status is for people.
func setStatus(ctx workflow.Context, status string) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, AttrStatus.ValueSet(status)); err != nil {
		workflow.GetLogger(ctx).Warn("search attribute not updated", "status", status, "error", err)
	}
}
