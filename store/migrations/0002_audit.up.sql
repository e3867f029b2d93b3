-- The audit log: append-only and hash-chained. Each row's hash covers its
-- content and the previous row's hash (see store/audit.go for the exact
-- encoding), and audit_head records the latest seq and hash in the same
-- transaction as each append, so that editing, inserting or deleting rows,
-- including the last ones, shows up in VerifyAudit.

CREATE TABLE audit_log (
	-- 1, 2, 3… without gaps: assigned by the appender under the lock on
	-- audit_head, not by a sequence (sequences skip numbers on rollback).
	seq        bigint      PRIMARY KEY CHECK (seq > 0),
	at         timestamptz NOT NULL,
	actor      text        NOT NULL,
	action     text        NOT NULL,
	subject    text        NOT NULL,
	outcome    text        NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
	detail     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object'),
	prev_hash  bytea       NOT NULL CHECK (length(prev_hash) = 32),
	hash       bytea       NOT NULL CHECK (length(hash) = 32)
);

CREATE TABLE audit_head (
	id    boolean PRIMARY KEY DEFAULT true CHECK (id),
	seq   bigint  NOT NULL CHECK (seq >= 0),
	hash  bytea   NOT NULL CHECK (length(hash) = 32)
);

-- The chain starts from 32 zero bytes.
INSERT INTO audit_head (seq, hash) VALUES (0, decode(repeat('00', 32), 'hex'));

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
		USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only
	BEFORE UPDATE OR DELETE ON audit_log
	FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();

CREATE TRIGGER audit_log_no_truncate
	BEFORE TRUNCATE ON audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The head only ever moves forward by one, in step with an append.
CREATE FUNCTION audit_head_advance_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.seq <> OLD.seq + 1 THEN
		RAISE EXCEPTION 'audit_head may only advance by one (from % to %)', OLD.seq, NEW.seq
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER audit_head_advance_only
	BEFORE UPDATE ON audit_head
	FOR EACH ROW EXECUTE FUNCTION audit_head_advance_only();

CREATE TRIGGER audit_head_no_delete
	BEFORE DELETE ON audit_head
	FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();

CREATE TRIGGER audit_head_no_truncate
	BEFORE TRUNCATE ON audit_head
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
