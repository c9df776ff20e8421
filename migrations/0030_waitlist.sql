-- Waiting lists (issue 16): one row per waiting-list entry, from the waitlist.* topics,
-- as of the highest version applied (the same forward-only version guard as bookings).
-- Columns are the entry snapshot's (app.wire.contract.EntrySnapshot), snake_case.
CREATE TABLE waitlist_entries (
    id                  text        PRIMARY KEY,
    rider_id            text        NOT NULL,
    route_id            text        NOT NULL,
    travel_date         date        NOT NULL,
    origin_stop_id      text        NOT NULL,
    destination_stop_id text        NOT NULL,
    seats_booked        int         NOT NULL,
    join_order          int         NOT NULL,   -- offers go in this order, per trip
    position            int,                    -- in the queue when it joined; reads compute the current one
    status              text        NOT NULL,
    seat_numbers        int[]       NOT NULL,   -- the seats offered; empty before an offer
    joined_at           timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    offered_at          timestamptz,
    offer_expires_at    timestamptz,
    booking_id          text,                   -- the booking an accepted offer became
    version             int         NOT NULL CHECK (version > 0),
    trip_key            text        NOT NULL,
    event_id            text        NOT NULL
);

-- A trip's list in join order (admins), and the entries still waiting ahead of one (its
-- current position).
CREATE INDEX waitlist_entries_trip_order ON waitlist_entries (trip_key, join_order);
CREATE INDEX waitlist_entries_waiting ON waitlist_entries (trip_key, join_order) WHERE status = 'WAITING';

-- A rider's own entries, newest first.
CREATE INDEX waitlist_entries_rider ON waitlist_entries (rider_id, joined_at DESC, id DESC);
