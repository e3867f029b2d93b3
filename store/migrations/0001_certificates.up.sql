-- Certificates issued by GridPay's CAs, their revocations, and per-issuer
-- CRL state. Every timestamp is timestamptz; the store reads them as UTC.

CREATE TABLE certificates (
	-- Lower-case hex of the certificate's serial number, no separators.
	serial        text        PRIMARY KEY CHECK (serial ~ '^[0-9a-f]{1,64}$'),
	-- The issuing CA: its subject key identifier (hex) or name.
	issuer        text        NOT NULL CHECK (issuer <> ''),
	subject       text        NOT NULL,
	customer_id   text        CHECK (customer_id <> ''),
	token_serial  text        CHECK (token_serial <> ''),
	kind          text        NOT NULL CHECK (kind IN ('customer', 'server', 'service', 'ca')),
	not_before    timestamptz NOT NULL,
	not_after     timestamptz NOT NULL CHECK (not_after > not_before),
	der           bytea       NOT NULL CHECK (length(der) > 0),
	sha256        bytea       NOT NULL UNIQUE CHECK (length(sha256) = 32),
	created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX certificates_customer_id ON certificates (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX certificates_token_serial ON certificates (token_serial) WHERE token_serial IS NOT NULL;
CREATE INDEX certificates_issuer ON certificates (issuer);

CREATE TABLE revocations (
	serial      text        PRIMARY KEY REFERENCES certificates (serial),
	-- RFC 5280 CRLReason; 7 is unassigned.
	reason      smallint    NOT NULL CHECK (reason BETWEEN 0 AND 10 AND reason <> 7),
	revoked_at  timestamptz NOT NULL,
	revoked_by  text        NOT NULL CHECK (revoked_by <> ''),
	note        text        NOT NULL DEFAULT ''
);

-- One row per issuing CA: the last CRL number handed out (CRL numbers must
-- strictly increase, RFC 5280 5.2.3) and the latest CRL saved.
CREATE TABLE crl_state (
	issuer       text        PRIMARY KEY CHECK (issuer <> ''),
	last_number  bigint      NOT NULL CHECK (last_number > 0),
	crl_number   bigint      CHECK (crl_number > 0 AND crl_number <= last_number),
	crl_der      bytea,
	this_update  timestamptz,
	next_update  timestamptz,
	saved_at     timestamptz,
	CHECK ((crl_number IS NULL) = (crl_der IS NULL)
	   AND (crl_number IS NULL) = (this_update IS NULL)
	   AND (crl_number IS NULL) = (next_update IS NULL))
);
