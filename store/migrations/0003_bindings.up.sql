-- Bindings of USB keys (tokens) to customers. A binding goes
-- pending -> active -> inactive, or pending -> inactive (never confirmed).
-- At most one live (pending or active) binding per token and per customer.

CREATE TABLE bindings (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	token_serial   text        NOT NULL CHECK (token_serial <> ''),
	customer_id    text        NOT NULL CHECK (customer_id <> ''),
	cert_serial    text        NOT NULL UNIQUE REFERENCES certificates (serial),
	status         text        NOT NULL CHECK (status IN ('pending', 'active', 'inactive')),
	-- Who asked (operator or workflow ID).
	created_by     text        NOT NULL CHECK (created_by <> ''),
	-- The idempotency key of the request that created it (the binding
	-- workflow's ID and run): a retried request finds its binding here.
	request_key    text        UNIQUE CHECK (request_key <> ''),
	created_at     timestamptz NOT NULL DEFAULT now(),
	activated_at   timestamptz,
	deactivated_at timestamptz,
	-- Why it ended: lost, returned, replaced, unconfirmed...
	end_reason     text        NOT NULL DEFAULT '',
	CHECK ((status = 'active') = (activated_at IS NOT NULL AND deactivated_at IS NULL)),
	CHECK ((status = 'inactive') = (deactivated_at IS NOT NULL))
);

CREATE UNIQUE INDEX bindings_live_token ON bindings (token_serial) WHERE status IN ('pending', 'active');
CREATE UNIQUE INDEX bindings_live_customer ON bindings (customer_id) WHERE status IN ('pending', 'active');
CREATE INDEX bindings_customer ON bindings (customer_id);
