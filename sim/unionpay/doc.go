// Package simunionpay simulates the China UnionPay online payment gateway
// (ACP 5.1.0 style) for development and tests: it speaks exactly what
// GridPay's client in package unionpay speaks, keeps its state in
// PostgreSQL (schema unionpay_sim) so that it survives a restart in the
// middle of a test, and can be switched into faults.
//
// # Endpoints
//
//	POST /gateway/api/frontTransReq.do  consume form (txnType 01) posted by the payer's browser → pay page
//	GET  /gateway/pay/{token}           the pay page: amount, description, card number, Approve / Decline
//	POST /gateway/pay/{token}           the payer's click → back to frontUrl with the signed result
//	POST /gateway/api/backTransReq.do   refund (04, partial) and cancel (31, same day, full amount)
//	POST /gateway/api/queryTrans.do     query (00) by orderId + txnTime
//	POST /gateway/api/fileTransReq.do   reconciliation file (76, fileType 00)
//
// and, on a separate loopback-only admin listener: GET/PUT /faults,
// GET /transactions, GET /notifications, GET /healthz.
//
// Every request must carry version 5.1.0, signMethod 01, the certId of a
// merchant certificate the simulator trusts (Options.MerchantCerts, files,
// or StateDir/merchants) issued to the request's merId, and a signature
// that verifies with it. Every answer, notification and browser return is
// signed with the simulator's gateway key; its certificate travels in
// signPubKeyCert and chains to StateDir/root.pem. Answers are form-encoded
// (the real gateway leaves values unencoded; ours are proper
// application/x-www-form-urlencoded).
//
// # Response codes
//
// The simulator answers with the codes of the ACP appendix:
//
//	00  success / accepted (refunds and cancels: accepted, decided later)
//	01  consume declined by the payer (origRespCode of a query)
//	03  (fault only) transaction timed out: query again
//	04  (fault only) state unknown
//	05  transaction accepted, not decided yet: a consume waiting for the
//	    payer (origRespCode), or a query answered under the fault
//	06  system busy: an internal error, nothing decided, try again
//	10  message format error (version, signMethod, field formats, wrong txnType for the endpoint)
//	11  signature verification failed (unknown certId, certId of another merchant, certificate expired, bad signature)
//	12  duplicate: the same merId, orderId and txnTime sent before with other content
//	    (the same request sent again gets the same answer)
//	13  required field missing
//	33  refund over what is left of the consume
//	34  no such transaction (query)
//	35  original transaction missing or in the wrong state (not a successful consume of
//	    this merchant; cancel of a consume settled on another day, or partly refunded)
//	36  cancel amount is not the consume's full amount
//	39  the pay timeout passed (consume refused; origRespCode of an expired order)
//	45  the consume is already fully refunded or cancelled
//	61  invalid card number (shown on the pay page)
//
// A consume is pending from the form's post until the payer decides or its
// payTimeout passes (then it fails with 39, lazily, at the next look). A
// refund or cancel is pending for Options.ProcessDelay, then succeeds;
// its amount is reserved against the consume from acceptance, so the sum
// of refunds never exceeds the consume.
//
// # Notifications
//
// A back notification (the same fields as the browser's return to
// frontUrl) is queued in the database transaction that decides the
// transaction, and POSTed to backUrl. The resend schedule is the real
// gateway's: an answer other than HTTP 200 within NotifyTimeout (10 s) is
// a failure, and the notification is sent again 1, 2, 4 and 5 minutes
// after the previous send, five sends in all (ResendSchedule, scaled by
// Options.TimeScale). Like the real gateway, failed payments are not
// notified unless Options.NotifyFailures.
//
// # Reconciliation file
//
// fileContent is base64 of zlib-compressed text, in the format documented
// in unionpay/file.go: one line per consume, refund and cancel that
// succeeded on the settlement date (the Shanghai calendar date on which it
// succeeded; MMDD means the latest such date not after today). Files are
// available at once and list what has settled so far.
//
// # Faults
//
// See Faults: drop, duplicate, delay and reorder notifications; answer
// queries 03/04/05 for N queries or until an instant; fail refunds
// transiently; auto-approve every consume for load tests.
package simunionpay
