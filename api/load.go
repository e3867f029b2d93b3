package api

import "time"

// The signed load exchange (patent CN101211451A, 圈存): prepaid funds from
// the customer's account at the power company onto the wallet of the USB
// key. The three messages are protocol.LoadRequest, protocol.LoadAllow and
// protocol.LoadReport; the API carries them as signed bytes.
//
//	GET  PathLoads        → LoadList                         the customer's loads as GridPay recorded them
//	POST PathLoads        LoadRequest → LoadAllow            the key's signed request; the HSM-signed allow
//	POST PathLoadReports  LoadReport  → LoadReportAnswer     the key's receipt, error report, or (at the start
//	                                                         of every session) its wallet's state
//
// Sending the same signed request again returns the same allow. Every
// session of the client sends a state report first, so that a load whose
// receipt never arrived is settled by the key's sequence number.
const (
	PathLoads       = Version + "/loads"        // GET → LoadList; POST LoadRequest → LoadAllow
	PathLoadReports = Version + "/load-reports" // POST LoadReport → LoadReportAnswer
)

// Error codes of the load API (HTTP 409 or 422).
const (
	// CodeSequenceUsed: the key used that sequence number before, or the
	// request was replayed: sign a new request with a higher number.
	CodeSequenceUsed = "sequence_used"
	// CodeLoadPending: another load of the key is still being settled;
	// send the wallet's state (client wallet) and try again after it.
	CodeLoadPending = "load_pending"
	// CodeLoadRefused: the load cannot be made: the prepaid account holds
	// too little, the amount is outside the limits, or the wallet on the
	// key does not match GridPay's records. Nothing was taken.
	CodeLoadRefused = "load_refused"
)

// LoadRequest starts a load (POST PathLoads): the encoded
// protocol.LoadRequest and the USB key's signature over its digest.
type LoadRequest struct {
	Request   []byte `json:"request"`
	Signature []byte `json:"signature"`
}

// LoadAllow is the answer to a LoadRequest: the encoded protocol.LoadAllow,
// GridPay's load signer's signature over its digest, and the signer's
// certificate chain (DER: the signer's certificate, then the services CA)
// up to GridPay's root, which the client has.
type LoadAllow struct {
	LoadID     string    `json:"load_id"`
	Sequence   uint64    `json:"sequence"`
	Amount     Amount    `json:"amount"`
	NewBalance Amount    `json:"new_balance"`
	Allow      []byte    `json:"allow"`
	Signature  []byte    `json:"signature"`
	Chain      [][]byte  `json:"chain"`
	Expires    time.Time `json:"expires"`
	Status     string    `json:"status"`
}

// LoadReport delivers a key's report (POST PathLoadReports): the encoded
// protocol.LoadReport and the USB key's signature over its digest.
type LoadReport struct {
	Report    []byte `json:"report"`
	Signature []byte `json:"signature"`
}

// LoadStatus is where a load stands.
type LoadStatus struct {
	LoadID   string `json:"load_id"`
	Sequence uint64 `json:"sequence"`
	Amount   Amount `json:"amount"`
	// Status: verifying, debiting, signing, awaiting-receipt,
	// awaiting-contact, cancelling (refunded once the allow has expired),
	// confirmed, refunded, rejected.
	Status  string     `json:"status"`
	Reason  string     `json:"reason,omitempty"` // why refunded or rejected
	Expires *time.Time `json:"expires,omitempty"`
	Final   bool       `json:"final"`
}

// LoadReportAnswer is the answer to a LoadReport: the loads it was
// delivered to and where they stand now, and the wallet GridPay last
// confirmed for the key.
type LoadReportAnswer struct {
	Loads     []LoadStatus  `json:"loads"`
	Confirmed *WalletRecord `json:"confirmed,omitempty"`
}

// WalletRecord is a wallet state GridPay signed and knows the key took.
type WalletRecord struct {
	Sequence uint64 `json:"sequence"`
	LoadID   string `json:"load_id"`
	Balance  Amount `json:"balance"`
}

// LoadList is the answer of GET PathLoads: the customer's loads (every key
// of the customer's), newest first, at most 100.
type LoadList struct {
	Items []LoadRecord `json:"items"`
}

// LoadRecord is one load as GridPay recorded it. Status is the record's:
// verified, debited, allowed (the allow is out, the key's word awaited),
// confirmed, refunded, rejected.
type LoadRecord struct {
	LoadID      string     `json:"load_id"`
	TokenSerial string     `json:"token_serial"`
	Sequence    uint64     `json:"sequence"`
	Amount      Amount     `json:"amount"`
	Status      string     `json:"status"`
	ConfirmedBy string     `json:"confirmed_by,omitempty"` // receipt, contact or operator
	Reason      string     `json:"reason,omitempty"`
	Created     time.Time  `json:"created"`
	Expires     *time.Time `json:"expires,omitempty"`
	Settled     *time.Time `json:"settled,omitempty"` // when confirmed or refunded
}
