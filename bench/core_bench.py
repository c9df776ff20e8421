"""Micro-benchmark of the pure booking core on one hot trip (not a test).

    .venv/bin/python bench/core_bench.py [--commands 10000] [--runs 5] [--seed 7]

A seeded generator first plays a realistic mix against a trip of 10 stops and 50 seats
(creates on random legs, payment initiation and success, rider cancels that free seats,
refunds reported done, ticks, availability queries and re-sent commands), recording each
command with its record time. Each timed run replays that recorded stream into a fresh
state, so every run does exactly the same work.

It prints markdown tables: `handle` commands/s (the core alone, state kept in memory) as
the median of the runs with the min-max spread; the time to encode and decode the trip's
final state with app.tables.codec, which a table-backed agent pays on every command if it
decodes the entry, handles the command and writes the entry back; the ceiling that puts on
such an agent; and the encoded size of the state.
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

try:
    from app.tables.codec import decode_state, encode_state
    SIZE_METHOD = "app.tables.codec.encode_state"
except ImportError:  # the codec is another module's job; fall back to a plain JSON dump
    import dataclasses

    import orjson

    def encode_state(state: TripState) -> bytes:
        return orjson.dumps(dataclasses.asdict(state), default=str)

    decode_state = None
    SIZE_METHOD = "orjson.dumps(dataclasses.asdict(state))"

POLICY = Policy()
STOPS, SEATS = 10, 50
DRIVER = Actor("driver-1", Role.DRIVER)
PAYMENTS = Actor("payments", Role.SERVICE)
TICKER = Actor("ticker", Role.SERVICE)
MIX = {"create": 40, "pay": 18, "initiate": 10, "cancel": 8, "refund": 9, "tick": 5, "duplicate": 5, "query": 5}


def hot_trip(rng: random.Random) -> Trip:
    return Trip(
        route_id="LOS-IBD-0700", travel_date=date(2030, 6, 15), timezone="Africa/Lagos",
        departure_time=clock(7, 0), capacity=SEATS, currency="NGN",
        stops=tuple(Stop(f"STOP-{i:02d}", 25 * i) for i in range(STOPS)),
        leg_fares=tuple(rng.randrange(50_000, 150_000, 50) for _ in range(STOPS - 1)),
        driver_id=DRIVER.user_id,
    )


def record_stream(commands: int, seed: int) -> tuple[list[tuple[object, int]], dict]:
    """Play the mix once, choosing each command from the state so far; return the stream
    and what happened (outcome counts, the largest and the final encoded state)."""
    rng = random.Random(seed)
    trip = hot_trip(rng)
    state, now = TripState(), trip.departure_ms(0) - 2 * 24 * 3_600_000
    stream: list[tuple[object, int]] = []
    codes: Counter[str] = Counter()
    largest = 0
    kinds, weights = zip(*MIX.items())

    def run(command) -> None:
        nonlocal largest
        stream.append((command, now))
        outcome = handle(state, command, now, POLICY)
        codes[f"{type(command).__name__}: {outcome.code or ('duplicate' if outcome.duplicate else 'ok')}"] += 1
        if len(stream) % 250 == 0:
            largest = max(largest, len(encode_state(state)))

    run(PublishTrip("publish", DRIVER, trip))
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
    final = encode_state(state)
    return stream, {"state": state,
        "codes": codes, "largest": max(largest, len(final)), "final": len(final),
        "bookings": len(state.bookings), "remembered": len(state.remembered),
        "sold": sum(leg.sold for leg in availability(state)), "span_h": (now - stream[0][1]) / 3_600_000,
    }


def time_core(stream) -> float:
    state = TripState()
    started = time.perf_counter()
    for command, now in stream:
        handle(state, command, now, POLICY)
    return len(stream) / (time.perf_counter() - started)


def time_codec(state: TripState, repeat: int = 50) -> tuple[float, float]:
    """Seconds to encode, then to decode, the given state once (mean of `repeat`)."""
    started = time.perf_counter()
    for _ in range(repeat):
        raw = encode_state(state)
    encoded = time.perf_counter()
    for _ in range(repeat):
        decode_state(raw)
    return (encoded - started) / repeat, (time.perf_counter() - encoded) / repeat


def summary(samples: list[float]) -> str:
    return f"{statistics.median(samples):,.0f} | {min(samples):,.0f} – {max(samples):,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    stream, seen = record_stream(args.commands, args.seed)
    core = [time_core(stream) for _ in range(args.runs)]
    print(f"Hot trip: {STOPS} stops, {SEATS} seats; {len(stream):,} commands over {seen['span_h']:.1f} h "
          f"of record time; Python {sys.version.split()[0]}; median of {args.runs} runs.\n")
    print("| path | commands/s (median) | min – max |")
    print("|---|---:|---:|")
    print(f"| `handle`, state in memory | {summary(core)} |")
    if decode_state is not None:
        codec = [time_codec(seen["state"]) for _ in range(args.runs)]
        encode_ms = statistics.median(e for e, _ in codec) * 1000
        decode_ms = statistics.median(d for _, d in codec) * 1000
        ceiling = 1 / (1 / statistics.median(core) + (encode_ms + decode_ms) / 1000)
        print(f"| decode + `handle` + encode per command (ceiling from the rows below) | {ceiling:,.0f} | |")
        print("\n| codec on the final state | ms (median) | min – max |")
        print("|---|---:|---:|")
        print(f"| `encode_state` | {encode_ms:.2f} | {min(e for e, _ in codec) * 1000:.2f} – "
              f"{max(e for e, _ in codec) * 1000:.2f} |")
        print(f"| `decode_state` | {decode_ms:.2f} | {min(d for _, d in codec) * 1000:.2f} – "
              f"{max(d for _, d in codec) * 1000:.2f} |")
    print(f"\nState size ({SIZE_METHOD}):\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| encoded entry at the end | {seen['final']:,} bytes |")
    print(f"| largest encoded entry seen (sampled every 250 commands) | {seen['largest']:,} bytes |")
    print(f"| bookings kept at the end | {seen['bookings']:,} |")
    print(f"| remembered outcomes at the end | {seen['remembered']:,} |")
    print(f"| seat-legs sold at the end | {seen['sold']:,} of {SEATS * (STOPS - 1):,} |")
    print("\nMix as played (command: outcome → count):\n")
    for key, count in sorted(seen["codes"].items()):
        print(f"- {key}: {count:,}")


if __name__ == "__main__":
    main()
