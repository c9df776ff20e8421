-- What the complete HTTP gateway needs (issue 5): indexes for the admin search, the
-- statistics and the passenger manifest (sinks/queries.py), and the Idempotency-Key store
-- shared by every gateway process (gateway/idempotency.py).

-- Admin search without a narrowing filter, newest first; id breaks ties for stable pages.
CREATE INDEX bookings_newest ON bookings (created_at DESC, id DESC);

-- Admin search by status (e.g. every CANCELLED booking still owed a refund), newest first.
CREATE INDEX bookings_status_newest ON bookings (status, created_at DESC, id DESC);

-- Admin search by driver, and unique drivers per date range.
CREATE INDEX bookings_driver_date ON bookings (driver_id, travel_date);

-- Statistics over a range of travel dates: the aggregates read these columns only, so
-- the planner can answer from the index without visiting the table (once vacuumed).
CREATE INDEX bookings_travel_date_stats ON bookings (travel_date)
    INCLUDE (status, currency, total_price, refund_amount, confirmed_at, rider_id, driver_id);

-- One row per (user, Idempotency-Key), kept 24 hours. A row without a response is a
-- request still in flight, until `locked_until`: past that its gateway is presumed dead
-- and a retry with the same body takes the key over (it maps onto the same command id,
-- so the worker answers it with the original outcome).
CREATE TABLE idempotency_keys (
    user_id         text        NOT NULL,
    idempotency_key text        NOT NULL,
    fingerprint     text        NOT NULL,   -- sha256 of method, route and canonical body
    claim_id        uuid        NOT NULL,   -- who holds the key while it is in flight
    command_id      text        NOT NULL,
    response_status int,                    -- NULL while in flight
    response_body   bytea,
    response_headers jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);

-- The hourly purge of keys older than 24 hours.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
