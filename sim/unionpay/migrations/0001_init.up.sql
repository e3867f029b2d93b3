-- The UnionPay simulator's tables, in their own schema so that the
-- simulator can share a database with GridPay without touching its tables.
-- Money is bigint fen. txn_time is the merchant's YYYYMMDDhhmmss
-- (Shanghai) exactly as sent; settle_day is a Shanghai date. Columns named
-- *_at are instants. process_at and next_at are on the real clock (they
-- drive the simulator's own timers); the others on the simulator's
-- business clock (Options.Now).

-- Consumes (01), refunds (04) and cancels (31). A card number is never
-- stored: card_last4 is all the simulator keeps.
CREATE TABLE unionpay_sim.transactions (
    query_id       text PRIMARY KEY CHECK (query_id ~ '^[0-9]{21}$'),
    mer_id         text        NOT NULL,
    order_id       text        NOT NULL,
    txn_time       text        NOT NULL CHECK (txn_time ~ '^[0-9]{14}$'),
    txn_type       text        NOT NULL CHECK (txn_type IN ('01', '04', '31')),
    amount         bigint      NOT NULL CHECK (amount > 0),
    orig_query_id  text REFERENCES unionpay_sim.transactions (query_id),
    status         text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    resp_code      text CHECK (resp_code ~ '^[0-9A-Z]{2}$'),
    resp_msg       text,
    front_url      text,
    back_url       text        NOT NULL,
    pay_timeout    timestamptz,
    description    text        NOT NULL DEFAULT '',
    pay_token      text UNIQUE,
    card_last4     text CHECK (card_last4 ~ '^[0-9]{4}$'),
    request_digest text        NOT NULL,
    trace_no       text        NOT NULL CHECK (trace_no ~ '^[0-9]{6}$'),
    settle_day     date,
    process_at     timestamptz,
    created_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    UNIQUE (mer_id, order_id, txn_time),
    CHECK ((txn_type = '01') = (orig_query_id IS NULL)),
    CHECK ((status = 'pending') = (resp_code IS NULL)),
    CHECK ((status = 'succeeded') = (settle_day IS NOT NULL))
);
CREATE INDEX transactions_orig ON unionpay_sim.transactions (orig_query_id) WHERE orig_query_id IS NOT NULL;
CREATE INDEX transactions_due ON unionpay_sim.transactions (process_at) WHERE status = 'pending' AND process_at IS NOT NULL;
CREATE INDEX transactions_settled ON unionpay_sim.transactions (mer_id, settle_day) WHERE status = 'succeeded';

CREATE SEQUENCE unionpay_sim.txn_seq;

-- Back notifications: the signed fields are made once, so that every
-- resend is the same message, as with the real gateway.
CREATE TABLE unionpay_sim.notifications (
    id           bigserial PRIMARY KEY,
    query_id     text        NOT NULL REFERENCES unionpay_sim.transactions (query_id),
    url          text        NOT NULL,
    fields       jsonb       NOT NULL,
    state        text        NOT NULL CHECK (state IN ('pending', 'delivered', 'given_up', 'dropped')),
    sends        int         NOT NULL DEFAULT 0 CHECK (sends >= 0),
    next_at      timestamptz,
    created_at   timestamptz NOT NULL,
    delivered_at timestamptz,
    CHECK ((state = 'pending') = (next_at IS NOT NULL))
);
CREATE INDEX notifications_due ON unionpay_sim.notifications (next_at) WHERE state = 'pending';
CREATE INDEX notifications_txn ON unionpay_sim.notifications (query_id);

-- Every HTTP POST of a notification, duplicates included.
CREATE TABLE unionpay_sim.deliveries (
    id              bigserial PRIMARY KEY,
    notification_id bigint      NOT NULL REFERENCES unionpay_sim.notifications (id),
    send            int         NOT NULL CHECK (send BETWEEN 1 AND 5),
    copy            int         NOT NULL CHECK (copy >= 1),
    sent_at         timestamptz NOT NULL,
    http_status     int,
    error           text
);
CREATE INDEX deliveries_notification ON unionpay_sim.deliveries (notification_id);
