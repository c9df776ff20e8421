"""Micro-benchmark of the pure booking core on one hot trip (not a test).

    .venv/bin/python bench/core_bench.py [--commands 10000] [--runs 5] [--seed 7] [--seats 50 1000] [--batch 100]

A seeded generator first plays a realistic mix against a trip of 10 stops and 50 seats
(creates on random legs, payment initiation and success, rider cancels that free seats,
refunds reported done, ticks, availability queries and re-sent commands), recording each
command with its record time. Each timed run replays that recorded stream into a fresh
state, so every run does exactly the same work. With several `--seats`, a stream is
recorded for each capacity (the same mix and seed), and their runs alternate, so the
capacities are compared side by side on the same machine state.

It prints markdown tables of commands/s, as the median of the runs with the min-max
spread, for four paths: `handle` alone with the whole state in memory; `TripStore.handle`
over a dict standing in for the RocksDB table, as the agent runs it (decoded state cached
between commands, what changed written once per batch of `--batch` commands); the same,
written after every command; and with nothing cached, as after a restart or a rebalance.
Then what the table holds and what a command writes: the bytes that go into changelog
records.
"""

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from datetime import date
from datetime import time as clock
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.domain.booking import HOLDING, Status  # noqa: E402
from app.domain.commands import (  # noqa: E402
    Actor,
    CancelBooking,
    CreateBooking,
    RefundDone,
    ExpireHolds,
    InitiatePayment,
    PaymentSucceeded,
    PublishTrip,
    QueryAvailability,
    Role,
)
from app.domain.handle import handle  # noqa: E402
from app.domain.policy import Policy  # noqa: E402
from app.domain.state import TripState, availability  # noqa: E402
from app.domain.trip import Stop, Trip  # noqa: E402
from app.tables.staged import Staged, apply  # noqa: E402
from app.tables.store import TripStore  # noqa: E402

POLICY = Policy()
STOPS = 10
DRIVER = Actor("driver-1", Role.DRIVER)
ROUTES = Actor("route-service", Role.SERVICE)
PAYMENTS = Actor("payments", Role.SERVICE)
TICKER = Actor("ticker", Role.SERVICE)
MIX = {"create": 40, "pay": 18, "initiate": 10, "cancel": 8, "refund": 9, "tick": 5, "duplicate": 5, "query": 5}


def hot_trip(rng: random.Random, seats: int) -> Trip:
    return Trip(
        route_id="LOS-IBD-0700", travel_date=date(2030, 6, 15), timezone="Africa/Lagos",
        departure_time=clock(7, 0), capacity=seats, currency="NGN",
        stops=tuple(Stop(f"STOP-{i:02d}", 25 * i) for i in range(STOPS)),
        leg_fares=tuple(rng.randrange(50_000, 150_000, 50) for _ in range(STOPS - 1)),
        driver_id=DRIVER.user_id,
    )


def record_stream(commands: int, seed: int, seats: int) -> tuple[list[tuple[object, int]], dict]:
    """Play the mix once, choosing each command from the state so far; return the stream
    and what happened (outcome counts, the largest and the final encoded state)."""
    rng = random.Random(seed)
    trip = hot_trip(rng, seats)
    state, now = TripState(), trip.departure_ms(0) - 2 * 24 * 3_600_000
    stream: list[tuple[object, int]] = []
    codes: Counter[str] = Counter()
    kinds, weights = zip(*MIX.items())

    def run(command) -> None:
        stream.append((command, now))
        outcome = handle(state, command, now, POLICY)
        codes[f"{type(command).__name__}: {outcome.code or ('duplicate' if outcome.duplicate else 'ok')}"] += 1

    run(PublishTrip("publish", ROUTES, trip))
    for n in range(commands - 1):
        now += rng.randrange(0, 3_000)  # a busy trip: a command every 1.5 s on average
        cid = f"cmd-{n}"
        kind = rng.choices(kinds, weights)[0]
        holding = [b for b in state.bookings.values() if b.status in HOLDING]
        live = [b for b in state.bookings.values() if b.status in HOLDING or b.status is Status.CONFIRMED]
        owed = [b for b in state.bookings.values() if b.status is Status.CANCELLED and b.view().refund_amount]
        if kind == "create" or (kind in ("pay", "initiate") and not holding) or (kind == "cancel" and not live) \
                or (kind == "refund" and not owed):
            first = rng.randrange(STOPS - 1)
            last = rng.randrange(first + 1, STOPS)
            rider = Actor(f"rider-{rng.randrange(5_000)}", Role.RIDER)
            run(CreateBooking(cid, rider, f"STOP-{first:02d}", f"STOP-{last:02d}", rng.choice((1, 1, 1, 2, 2, 3, 4))))
        elif kind == "pay":
            b = rng.choice(holding)
            run(PaymentSucceeded(cid, PAYMENTS, b.booking_id, f"pay-{n}", b.total))
        elif kind == "initiate":
            b = rng.choice(holding)
            run(InitiatePayment(cid, Actor(b.rider_id, Role.RIDER), b.booking_id, f"pay-{n}"))
        elif kind == "cancel":
            b = rng.choice(live)
            run(CancelBooking(cid, Actor(b.rider_id, Role.RIDER), b.booking_id, "Change of plans, sorry"))
        elif kind == "refund":
            b = rng.choice(owed)
            run(RefundDone(cid, PAYMENTS, b.booking_id, b.view().refund_amount))
        elif kind == "tick":
            run(ExpireHolds(cid, TICKER))
        elif kind == "query":
            run(QueryAvailability(cid, TICKER))
        else:
            run(stream[rng.randrange(max(1, len(stream) - 500), len(stream))][0])
    return stream, {
        "key": trip.key.encode(), "codes": codes, "bookings": len(state.bookings), "seats": seats,
        "live": sum(b.status in HOLDING or b.status is Status.CONFIRMED for b in state.bookings.values()),
        "sold": sum(leg.sold for leg in availability(state)), "span_h": (now - stream[0][1]) / 3_600_000,
    }


def time_core(stream) -> float:
    state = TripState()
    started = time.perf_counter()
    for command, now in stream:
        handle(state, command, now, POLICY)
    return len(stream) / (time.perf_counter() - started)


class CountingTable(dict):
    """A dict standing in for the table, counting what is written to it (the changelog)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.writes = 0

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        self.written += sum(len(value) for value in writes.values() if value is not None)
        self.writes += len(writes)
        apply(writes, self)


def time_store(stream, key: bytes, trips_cached: int, batch: int) -> tuple[float, CountingTable]:
    """The commands through the table store, `batch` of them between two writes of what
    they changed (a worker's batch)."""
    table = CountingTable()
    staged, store = Staged(table), TripStore(trips_cached)
    started = time.perf_counter()
    for offset, (command, now) in enumerate(stream):
        store.handle(staged, key, command, now, offset, POLICY)
        if offset % batch == batch - 1:
            store.write_trips()
            table.apply(staged.take())
    store.write_trips()
    table.apply(staged.take())
    return len(stream) / (time.perf_counter() - started), table


def summary(samples: list[float]) -> str:
    return f"{statistics.median(samples):,.0f} ({min(samples):,.0f} – {max(samples):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seats", type=int, nargs="+", default=[50, 1000], help="trip capacities, side by side")
    parser.add_argument("--batch", type=int, default=100, help="commands between two writes of the table")
    args = parser.parse_args()

    recorded = {seats: record_stream(args.commands, args.seed, seats) for seats in args.seats}
    paths = {
        "core": ("`handle`, the whole state in memory", lambda stream, key: time_core(stream)),
        "cached": (f"`TripStore.handle`, the trip cached, written every {args.batch} commands (the agent's path)",
                   lambda stream, key: time_store(stream, key, 1, args.batch)[0]),
        "one each": ("`TripStore.handle`, the trip cached, written every command",
                     lambda stream, key: time_store(stream, key, 1, 1)[0]),
        "uncached": ("`TripStore.handle`, nothing cached (read back every command)",
                     lambda stream, key: time_store(stream, key, 0, 1)[0]),
    }
    timings: dict[int, dict[str, list[float]]] = {seats: {path: [] for path in paths} for seats in args.seats}
    for _ in range(args.runs):  # alternate the capacities, run by run
        for seats, (stream, seen) in recorded.items():
            for path, (_, timed) in paths.items():
                timings[seats][path].append(timed(stream, seen["key"]))
    print(f"Hot trip: {STOPS} stops, {' and '.join(map(str, args.seats))} seats; {args.commands:,} commands each "
          f"(same mix and seed); Python {sys.version.split()[0]}; median of {args.runs} runs, alternating.\n")
    print("| path | " + " | ".join(f"{seats} seats: commands/s (min – max)" for seats in args.seats) + " |")
    print("|---|" + "---:|" * len(args.seats))
    for path, (label, _) in paths.items():
        print(f"| {label} | " + " | ".join(summary(timings[seats][path]) for seats in args.seats) + " |")
    for seats, (stream, seen) in recorded.items():
        report_table(seats, stream, seen, args.batch)


def report_table(seats: int, stream, seen: dict, batch: int) -> None:
    key = seen["key"]
    table = time_store(stream, key, 1, batch)[1]
    trip_entry = len(table[key])
    bookings = [len(v) for k, v in table.items() if b"/b/" in k]
    outcomes = [len(v) for k, v in table.items() if b"/c/" in k]
    print(f"\n| {seats} seats: what the table holds at the end | |")
    print("|---|---:|")
    print(f"| trip entry | {trip_entry:,} bytes |")
    print(f"| booking entries | {len(bookings):,}, median {statistics.median(bookings):,.0f} bytes |")
    print(f"| live bookings (held or confirmed) | {seen['live']:,} |")
    print(f"| remembered outcome entries (and as many queue entries) | {len(outcomes):,}, "
          f"median {statistics.median(outcomes):,.0f} bytes |")
    print(f"| written per command (changelog payload), mean, every {batch} commands | "
          f"{table.written / len(stream):,.0f} bytes in {table.writes / len(stream):.2f} records |")
    print(f"| seat-legs sold at the end | {seen['sold']:,} of {seats * (STOPS - 1):,} |")
    print(f"\nMix as played on {seats} seats (command: outcome → count):\n")
    for outcome, count in sorted(seen["codes"].items()):
        print(f"- {outcome}: {count:,}")


if __name__ == "__main__":
    main()
