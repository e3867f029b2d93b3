-- Loads (patent CN101211451A, 圈存): prepaid funds moved from a customer's
-- prepaid account at the platform onto the electronic wallet of the USB key.
--
-- A load goes
--   verified -> debited -> allowed -> confirmed    (the key took it: receipt, or its next contact)
--   verified -> debited -> allowed -> refunded     (the key refused it, or showed it not applied after
--                                                   the allow expired: the debit is credited back)
--   verified -> debited -> refunded                (the allow could not be signed: never handed out)
--   verified -> rejected                           (the platform refused the debit: nothing moved)
-- store/loads.go enforces the transitions; the checks below keep every row
-- self-consistent whatever writes it. Amounts are bigint fen. The platform
-- account number is not recorded (it is in the token-signed request only).

CREATE TABLE loads (
	id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	-- protocol.LoadID: load-<token>-<sequence>; the platform's debit is
	-- keyed by it, the refund by it and ":refund".
	load_id          text        NOT NULL UNIQUE CHECK (load_id <> ''),
	-- load/<token>/<sequence>
	workflow_id      text        NOT NULL UNIQUE CHECK (workflow_id <> ''),
	customer_id      text        NOT NULL CHECK (customer_id <> ''),
	token_serial     text        NOT NULL CHECK (token_serial <> ''),
	cert_serial      text        NOT NULL CHECK (cert_serial <> ''),
	-- The token's online transaction sequence number: each (token, sequence)
	-- is accepted once.
	sequence         bigint      NOT NULL CHECK (sequence > 0),
	-- The wallet as the key reported it when asking.
	wallet_sequence  bigint      NOT NULL CHECK (wallet_sequence >= 0 AND wallet_sequence < sequence),
	wallet_balance   bigint      NOT NULL CHECK (wallet_balance >= 0),
	amount           bigint      NOT NULL CHECK (amount > 0),
	currency         text        NOT NULL DEFAULT 'CNY' CHECK (currency = 'CNY'),
	-- SHA-256 of the token-signed request's encoding.
	request_sha256   bytea       NOT NULL CHECK (length(request_sha256) = 32),
	status           text        NOT NULL CHECK (status IN ('verified', 'debited', 'allowed', 'confirmed', 'refunded', 'rejected')),
	-- The debit at the platform (its prepaid entry key).
	debit_key        text        UNIQUE CHECK (debit_key <> ''),
	debited_at       timestamptz,
	-- The allow handed out: SHA-256 of the wallet state it sets (the
	-- state's encoding, which the receipt must carry back), its expiry, and
	-- the wallet balance it sets.
	state_sha256     bytea       CHECK (length(state_sha256) = 32),
	allowed_at       timestamptz,
	allow_expires_at timestamptz,
	new_balance      bigint,
	-- Confirmed by the key's receipt, or by its next contact showing the
	-- sequence advanced.
	confirmed_at     timestamptz,
	confirmed_by     text        CHECK (confirmed_by IN ('receipt', 'contact')),
	report_sha256    bytea       CHECK (length(report_sha256) = 32),
	-- The refund (compensation) at the platform.
	refund_key       text        UNIQUE CHECK (refund_key <> ''),
	refunded_at      timestamptz,
	-- Why it was rejected or refunded, for the customer.
	reason           text        NOT NULL DEFAULT '',
	created_at       timestamptz NOT NULL DEFAULT now(),
	updated_at       timestamptz NOT NULL DEFAULT now(),

	UNIQUE (token_serial, sequence),
	CHECK (new_balance IS NULL OR new_balance = wallet_balance + amount),
	-- Debited exactly in the statuses after the debit.
	CHECK ((status IN ('debited', 'allowed', 'confirmed', 'refunded')) = (debited_at IS NOT NULL)),
	CHECK ((debited_at IS NULL) = (debit_key IS NULL)),
	-- An allow exists for allowed and confirmed loads (a refunded one may
	-- have had one or not).
	CHECK (status NOT IN ('allowed', 'confirmed') OR allowed_at IS NOT NULL),
	CHECK (status NOT IN ('verified', 'debited', 'rejected') OR allowed_at IS NULL),
	CHECK ((allowed_at IS NULL) = (state_sha256 IS NULL) AND (allowed_at IS NULL) = (allow_expires_at IS NULL)
		AND (allowed_at IS NULL) = (new_balance IS NULL)),
	CHECK ((status = 'confirmed') = (confirmed_at IS NOT NULL)),
	CHECK ((confirmed_at IS NULL) = (confirmed_by IS NULL)),
	CHECK ((status = 'refunded') = (refunded_at IS NOT NULL)),
	CHECK ((refunded_at IS NULL) = (refund_key IS NULL)),
	-- Credited to the wallet and refunded never both: the money invariant.
	CHECK (confirmed_at IS NULL OR refunded_at IS NULL)
);

-- One load in flight per token: the next waits until the previous one is
-- settled, so a wallet's sequence numbers tell the outcome of every load.
CREATE UNIQUE INDEX loads_open_token ON loads (token_serial) WHERE status IN ('verified', 'debited', 'allowed');
CREATE INDEX loads_customer ON loads (customer_id, created_at DESC);
CREATE INDEX loads_confirmed ON loads (token_serial, sequence DESC) WHERE status = 'confirmed';
