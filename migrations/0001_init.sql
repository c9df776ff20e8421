-- The read model the sink builds from the lifecycle topics (docs/design.md §16, invariant I6).
--
-- Applied by `python -m sinks.migrate`, in one transaction, recorded in schema_migrations.
-- schema_migrations itself is created by the runner (it must exist before the first
-- migration can be recorded): version int primary key, name, checksum, applied_at.

-- One row per booking: every field of the booking snapshot an event carries
-- (app.wire.contract.BookingSnapshot, camelCase there, snake_case here), as of the highest
-- version applied. The sink only ever moves a row forward (version guard), so events
-- may arrive in any order across the lifecycle topics.
CREATE TABLE bookings (
    id                  text          PRIMARY KEY,
    booking_reference   text          NOT NULL,
    rider_id            text          NOT NULL,
    driver_id           text,
    route_id            text          NOT NULL,
    origin_stop_id      text          NOT NULL,
    destination_stop_id text          NOT NULL,
    travel_date         date          NOT NULL,
    departure_time      time          NOT NULL,   -- local time at the rider's pickup stop
    departure_at        timestamptz   NOT NULL,   -- the same moment as an instant
    seats_booked        int           NOT NULL,
    seat_numbers        int[]         NOT NULL,
    price_per_seat      numeric(14,2) NOT NULL,
    fare                numeric(14,2) NOT NULL,
    platform_fee        numeric(14,2) NOT NULL,
    total_price         numeric(14,2) NOT NULL,
    currency            text          NOT NULL,
    status              text          NOT NULL,
    payment_id          text,
    payment_status      text          NOT NULL,
    cancellation_reason text,
    cancelled_at        timestamptz,
    refund_amount       numeric(14,2) NOT NULL,
    refund_status       text          NOT NULL,
    booking_source      text          NOT NULL,
    created_at          timestamptz   NOT NULL,
    updated_at          timestamptz   NOT NULL,
    expires_at          timestamptz,
    confirmed_at        timestamptz,
    version             int           NOT NULL CHECK (version > 0),
    -- Not in the snapshot: where the row came from.
    trip_key            text          NOT NULL,   -- "<routeId>:<travelDate>", the command key
    event_id            text          NOT NULL    -- the event whose snapshot this row is
);

-- "My bookings", newest first; id breaks ties so that paging is stable.
CREATE INDEX bookings_rider_newest ON bookings (rider_id, created_at DESC, id DESC);

-- Not unique on purpose: a reference is BK + travel date + 6 characters derived from a
-- hash, unique only in practice, and two trips on the same date could collide. A unique
-- index would turn such a collision into a batch the sink can never write; the lookup
-- returns the newest match (optionally narrowed to the rider) instead.
CREATE INDEX bookings_reference ON bookings (booking_reference);

-- Upcoming trips of a rider: live statuses, departure in the future.
CREATE INDEX bookings_rider_upcoming ON bookings (rider_id, status, departure_at);

-- Manifests and admin search by trip.
CREATE INDEX bookings_route_date ON bookings (route_id, travel_date);

-- Every move of every booking, as published: one row per transition of an event. An
-- event is immutable and its id stable (docs/design.md §14), so (event_id, seq) makes a
-- replayed event a no-op.
CREATE TABLE booking_history (
    event_id    text        NOT NULL,
    seq         int         NOT NULL,   -- position of the transition in its event, from 0
    booking_id  text        NOT NULL,
    version     int         NOT NULL,   -- the booking version this transition produced
    from_status text        NOT NULL,
    to_status   text        NOT NULL,   -- equal to from_status for a recorded fact (payment_failed)
    reason      text        NOT NULL,
    actor       text        NOT NULL,
    at          timestamptz NOT NULL,
    command_id  text        NOT NULL,
    PRIMARY KEY (event_id, seq)
);

CREATE INDEX booking_history_booking ON booking_history (booking_id, version, seq);

-- The processor's view of each trip, from trip.updated (latest version wins).
CREATE TABLE trips (
    trip_key       text        PRIMARY KEY,
    route_id       text        NOT NULL,
    travel_date    date        NOT NULL,
    timezone       text        NOT NULL,
    departure_time time        NOT NULL,   -- local time at the first stop
    capacity       int         NOT NULL,
    currency       text        NOT NULL,
    stops          jsonb       NOT NULL,   -- [{"stopId", "offsetMinutes"}], in route order
    leg_fares      jsonb       NOT NULL,   -- [minor units], leg i from stop i to stop i + 1
    driver_id      text,
    status         text        NOT NULL,
    version        int         NOT NULL CHECK (version > 0),
    event_id       text        NOT NULL
);

CREATE INDEX trips_route_date ON trips (route_id, travel_date);

-- Where the sink is in each partition, written in the same transaction as the rows the
-- records produced: Postgres, not the consumer group, is the truth about progress.
CREATE TABLE sink_offsets (
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
