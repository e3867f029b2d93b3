-- The platform simulator's tables, in their own schema so that the
-- simulator can share a database with GridPay without touching its tables.
-- Money is bigint fen; business dates are date (Shanghai); instants are
-- timestamptz. Late fees, amounts due and bill statuses are not stored:
-- they depend on "today" and are computed from the bill and its payments.

CREATE TABLE platform_sim.customers (
    id                    text PRIMARY KEY,
    account_number        text   NOT NULL UNIQUE,
    name                  text   NOT NULL,
    type                  text   NOT NULL CHECK (type IN ('large_industry', 'general_commercial', 'agricultural')),
    voltage_grade         text   NOT NULL,
    contract_capacity_kva bigint NOT NULL CHECK (contract_capacity_kva >= 0),
    contact_name          text   NOT NULL,
    contact_phone         text   NOT NULL,
    address               text   NOT NULL
);

CREATE TABLE platform_sim.metering_points (
    id           text PRIMARY KEY,
    customer_id  text   NOT NULL REFERENCES platform_sim.customers (id),
    meter_number text   NOT NULL UNIQUE,
    location     text   NOT NULL,
    multiplier   bigint NOT NULL CHECK (multiplier > 0)
);
CREATE INDEX metering_points_customer ON platform_sim.metering_points (customer_id);

CREATE TABLE platform_sim.consumption (
    metering_point_id text   NOT NULL REFERENCES platform_sim.metering_points (id),
    period            text   NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    peak_kwh          bigint NOT NULL CHECK (peak_kwh >= 0),
    flat_kwh          bigint NOT NULL CHECK (flat_kwh >= 0),
    valley_kwh        bigint NOT NULL CHECK (valley_kwh >= 0),
    PRIMARY KEY (metering_point_id, period)
);

CREATE TABLE platform_sim.bills (
    id            text PRIMARY KEY,
    customer_id   text   NOT NULL REFERENCES platform_sim.customers (id),
    period        text   NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    issued_on     date   NOT NULL,
    due_date      date   NOT NULL CHECK (due_date >= issued_on),
    kwh           bigint NOT NULL CHECK (kwh >= 0),
    energy_charge bigint NOT NULL CHECK (energy_charge >= 0),
    basic_charge  bigint NOT NULL CHECK (basic_charge >= 0),
    UNIQUE (customer_id, period)
);

CREATE TABLE platform_sim.payments (
    reference      text PRIMARY KEY,
    customer_id    text        NOT NULL REFERENCES platform_sim.customers (id),
    amount         bigint      NOT NULL CHECK (amount > 0),
    prepaid        boolean     NOT NULL,
    channel        text        NOT NULL,
    channel_txn_id text        NOT NULL,
    paid_at        timestamptz NOT NULL,
    posted_at      timestamptz NOT NULL,
    -- The business day the payment took effect: late fees stop after it.
    posted_on      date        NOT NULL,
    status         text        NOT NULL CHECK (status IN ('posted', 'reversed')),
    reversed_at    timestamptz,
    reverse_note   text        NOT NULL DEFAULT '',
    -- SHA-256 of the canonical request, to tell a replay from a conflict.
    request_hash   text        NOT NULL,
    CHECK ((status = 'reversed') = (reversed_at IS NOT NULL))
);
CREATE INDEX payments_customer_paid ON platform_sim.payments (customer_id, paid_at DESC);

CREATE TABLE platform_sim.allocations (
    payment_reference text   NOT NULL REFERENCES platform_sim.payments (reference),
    position          int    NOT NULL,
    bill_id           text   NOT NULL REFERENCES platform_sim.bills (id),
    amount            bigint NOT NULL CHECK (amount > 0),
    PRIMARY KEY (payment_reference, position),
    UNIQUE (payment_reference, bill_id)
);
CREATE INDEX allocations_bill ON platform_sim.allocations (bill_id);

CREATE TABLE platform_sim.prepaid_accounts (
    customer_id text PRIMARY KEY REFERENCES platform_sim.customers (id),
    balance     bigint      NOT NULL CHECK (balance >= 0),
    updated_at  timestamptz NOT NULL
);

-- Every movement of a prepaid account. Entries made through the prepaid
-- API carry the caller's key; top-ups by payment and their reversals carry
-- the payment's reference instead.
CREATE TABLE platform_sim.prepaid_entries (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key               text UNIQUE,
    customer_id       text        NOT NULL REFERENCES platform_sim.customers (id),
    amount            bigint      NOT NULL CHECK (amount <> 0),
    balance_after     bigint      NOT NULL CHECK (balance_after >= 0),
    memo              text        NOT NULL,
    at                timestamptz NOT NULL,
    payment_reference text REFERENCES platform_sim.payments (reference),
    CHECK ((key IS NULL) <> (payment_reference IS NULL))
);
CREATE INDEX prepaid_entries_customer ON platform_sim.prepaid_entries (customer_id, id);
