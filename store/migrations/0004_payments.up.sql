-- Payments through UnionPay (the payment saga), the nonces of the
-- token-signed payment instructions, and daily reconciliation.
--
-- A payment goes
--   awaiting_payment -> paid -> posted                       (the normal case)
--   awaiting_payment -> paid -> refunding -> refunded        (the platform refused it: compensation)
--   awaiting_payment -> expired [-> paid -> ...]             (never paid by its deadline; reconciliation
--                                                              may find it paid after all)
--   rejected                                                 (refused before any order was made)
-- store/payments.go enforces the transitions; the checks below keep every
-- row self-consistent whatever writes it. Amounts are bigint fen.

CREATE TABLE payments (
	id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	-- The client's idempotency key: one payment per key and customer.
	idempotency_key  text        NOT NULL CHECK (idempotency_key ~ '^[A-Za-z0-9-]{16,64}$'),
	customer_id      text        NOT NULL CHECK (customer_id <> ''),
	-- payment/<customer>/<key> (or the workflow that recorded a rejection).
	workflow_id      text        NOT NULL UNIQUE CHECK (workflow_id <> ''),
	token_serial     text        NOT NULL CHECK (token_serial <> ''),
	cert_serial      text        NOT NULL CHECK (cert_serial <> ''),
	kind             text        NOT NULL CHECK (kind IN ('bills', 'prepay')),
	bill_ids         text[]      NOT NULL DEFAULT '{}',
	-- What is allocated to each bill (its amount due when the order was
	-- made), parallel to bill_ids.
	bill_amounts     bigint[]    NOT NULL DEFAULT '{}',
	amount           bigint      NOT NULL CHECK (amount > 0),
	currency         text        NOT NULL DEFAULT 'CNY' CHECK (currency = 'CNY'),
	-- SHA-256 of the signed instruction's encoding (the instruction itself is
	-- in the audit log's reach through this hash, and in the workflow).
	instruction_sha256 bytea     CHECK (length(instruction_sha256) = 32),
	-- UnionPay's order: orderId and txnTime identify it at the gateway.
	order_id         text        UNIQUE CHECK (order_id ~ '^[A-Za-z0-9]{8,32}$'),
	txn_time         timestamptz,
	pay_deadline     timestamptz,
	status           text        NOT NULL CHECK (status IN
	                   ('awaiting_payment', 'paid', 'posted', 'refunding', 'refunded', 'expired', 'rejected')),
	-- The charge: UnionPay's queryId of the consume and its settle date (MMDD).
	query_id         text        CHECK (query_id <> ''),
	settle_date      text        CHECK (settle_date ~ '^[0-9]{4}$'),
	paid_at          timestamptz,
	-- The posting at the platform: its reference (idempotency key there).
	posting_ref      text        UNIQUE CHECK (posting_ref <> ''),
	posted_at        timestamptz,
	-- The refund (compensation). Each attempt has its own orderId; a new
	-- attempt is made only after the previous one failed for certain.
	refund_attempt   integer     NOT NULL DEFAULT 0 CHECK (refund_attempt >= 0),
	refund_order_id  text        UNIQUE CHECK (refund_order_id ~ '^[A-Za-z0-9]{8,32}$'),
	refund_txn_time  timestamptz,
	refund_query_id  text        CHECK (refund_query_id <> ''),
	refund_settle_date text      CHECK (refund_settle_date ~ '^[0-9]{4}$'),
	refunded_at      timestamptz,
	-- Why it was refunded, expired or rejected, for the customer.
	reason           text        NOT NULL DEFAULT '',
	created_at       timestamptz NOT NULL DEFAULT now(),
	updated_at       timestamptz NOT NULL DEFAULT now(),

	UNIQUE (customer_id, idempotency_key),
	CHECK (cardinality(bill_ids) = cardinality(bill_amounts)),
	CHECK ((kind = 'prepay') = (cardinality(bill_ids) = 0)),
	-- Every payment but a rejected one has an order.
	CHECK ((status = 'rejected') = (order_id IS NULL)),
	CHECK ((order_id IS NULL) = (txn_time IS NULL) AND (order_id IS NULL) = (pay_deadline IS NULL)),
	-- Charged exactly when UnionPay's queryId is known.
	CHECK ((status IN ('paid', 'posted', 'refunding', 'refunded')) = (paid_at IS NOT NULL)),
	CHECK ((paid_at IS NULL) = (query_id IS NULL)),
	CHECK ((status = 'posted') = (posted_at IS NOT NULL)),
	CHECK ((posted_at IS NULL) = (posting_ref IS NULL)),
	CHECK ((status IN ('refunding', 'refunded')) = (refund_order_id IS NOT NULL)),
	CHECK ((refund_order_id IS NULL) = (refund_txn_time IS NULL) AND (refund_order_id IS NULL) = (refund_attempt = 0)),
	CHECK ((status = 'refunded') = (refunded_at IS NOT NULL)),
	-- Posted and refunded never both: the money invariant.
	CHECK (posted_at IS NULL OR refund_order_id IS NULL)
);

CREATE INDEX payments_customer ON payments (customer_id, created_at DESC);
CREATE INDEX payments_open ON payments (status) WHERE status IN ('awaiting_payment', 'paid', 'refunding');
CREATE INDEX payments_settle_date ON payments (settle_date) WHERE settle_date IS NOT NULL;
CREATE INDEX payments_refund_settle_date ON payments (refund_settle_date) WHERE refund_settle_date IS NOT NULL;

-- Each nonce of a token's signed instructions is accepted once: a replayed
-- instruction is refused. The workflow that first used it may present it
-- again (a retried activity), nobody else.
CREATE TABLE instruction_nonces (
	token_serial text        NOT NULL CHECK (token_serial <> ''),
	nonce        bytea       NOT NULL CHECK (length(nonce) BETWEEN 16 AND 32),
	workflow_id  text        NOT NULL CHECK (workflow_id <> ''),
	seen_at      timestamptz NOT NULL,
	PRIMARY KEY (token_serial, nonce)
);

-- Daily reconciliation: one run per settle date and workflow run, and the
-- mismatches it found.
CREATE TABLE recon_runs (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	-- The settle date reconciled, YYYY-MM-DD (Asia/Shanghai).
	settle_date   date        NOT NULL,
	workflow_id   text        NOT NULL CHECK (workflow_id <> ''),
	run_id        text        NOT NULL CHECK (run_id <> ''),
	status        text        NOT NULL CHECK (status IN ('running', 'done')),
	records       integer     NOT NULL DEFAULT 0 CHECK (records >= 0),
	matched       integer     NOT NULL DEFAULT 0 CHECK (matched >= 0),
	issues        integer     NOT NULL DEFAULT 0 CHECK (issues >= 0),
	fixes_started integer     NOT NULL DEFAULT 0 CHECK (fixes_started >= 0),
	started_at    timestamptz NOT NULL DEFAULT now(),
	finished_at   timestamptz,
	UNIQUE (workflow_id, run_id),
	CHECK ((status = 'done') = (finished_at IS NOT NULL))
);

CREATE TABLE recon_issues (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	run_id         bigint      NOT NULL REFERENCES recon_runs (id),
	kind           text        NOT NULL CHECK (kind IN
	                 ('paid_not_posted', 'posted_not_paid', 'amount_differs', 'refund_missing', 'unknown_order', 'platform_mismatch')),
	-- The UnionPay order (or refund order) concerned.
	order_id       text        NOT NULL CHECK (order_id <> ''),
	query_id       text        NOT NULL DEFAULT '',
	payment_id     bigint      REFERENCES payments (id),
	file_amount    bigint,
	gridpay_amount bigint,
	platform_amount bigint,
	detail         text        NOT NULL DEFAULT '',
	-- What reconciliation did about it: nothing (report only), signalled the
	-- running payment workflow, or started a recovery workflow.
	action         text        NOT NULL DEFAULT 'report' CHECK (action IN ('report', 'signal', 'recover')),
	created_at     timestamptz NOT NULL DEFAULT now(),
	UNIQUE (run_id, kind, order_id)
);

CREATE INDEX recon_issues_payment ON recon_issues (payment_id) WHERE payment_id IS NOT NULL;
