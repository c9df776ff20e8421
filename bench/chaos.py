"""`make chaos`: booking load with client retries while the worker is SIGKILLed every few
seconds (and the sink and the gateway now and then), each restarted at once; then the
checker (bench/checker.py) over the command log, topics, tables and Postgres.

    bench/infra.sh chaos [--commands 100000] [--kill-every 6] [--min-kills 30]

Clients never give up on a command: on a timeout, a 503 or a refused connection they send
it again with the same command id (Kafka) or Idempotency-Key (HTTP), as the contract says
is safe. Holds last a minute here, so expiries (and payments refused after them) happen.
A rider who finds the journey sold out often joins the trip's waiting list and then tries
now and then to accept an offer (one-minute offers here, so offers expire and pass on too),
pays for some, and leaves the list after a while if none came.
"""

import argparse
import asyncio
import random
from collections import Counter
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.config import Settings, get_settings
from app.models import topics
from bench import load
from bench.checker import ClientLog, check, committed_offsets
from bench.systems import SinkLag, openride_home, start_openride
from gateway.dispatch import command_id_for
from tests.stack import Stack

# Short holds, so the run sees expiries. The services get them through their environment
# and the checker through its settings: its truth must use the policy they used.
SHORT_HOLDS = {"hold_minutes": 1, "payment_hold_minutes": 2, "offer_minutes": 1}

RETRY_PAUSE_S = 0.5
# A rider on the waiting list tries to accept this often, this many times, then leaves.
ACCEPT_EVERY_S = 3.0
ACCEPT_TRIES = 20
ATTEMPT_TIMEOUT_S = 5.0
GIVE_UP_AFTER_S = 300.0


@dataclass
class Budget:
    """Commands left to send; the load goes on past zero until enough kills happened."""

    left: int
    enough_kills: Callable[[], bool]

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0 or not self.enough_kills()


class Chaos:
    def __init__(self, stack: Stack, direct: load.DirectKafka, trips: list[load.TripSpec], seed: int):
        self.stack = stack
        self.direct = direct
        self.trips = trips
        self.rng = random.Random(seed)
        self.clients = ClientLog()
        self.sent = 0
        self.answered = 0
        self.kills: dict[str, int] = {"worker": 0, "sink": 0, "gateway": 0}
        self.waitlist: Counter[str] = Counter()  # what riders on waiting lists got

    # -- clients ---------------------------------------------------------------------------

    async def command(self, key: str, document: dict[str, Any]) -> dict[str, Any] | None:
        """Sends until answered, always with the same command id."""
        deadline = time.monotonic() + GIVE_UP_AFTER_S
        while time.monotonic() < deadline:
            self.sent += 1
            try:
                body = await self.direct.request(key, document, ATTEMPT_TIMEOUT_S)
            except TimeoutError:
                continue
            self.clients.kafka[document["commandId"]].append(body)
            self.answered += 1
            return body
        return None

    async def kafka_flow(self, budget: Budget) -> None:
        """create -> sometimes pay -> sometimes cancel, over the command topic; sold out ->
        often the waiting list."""
        while budget.take():
            op = load.Scenario("chaos", self.trips, 0.0, seed=self.rng.randrange(1 << 30)).next_op()
            created = await self.command(op.trip.key, load.create_command(op))
            if created and created.get("code") == "seats_unavailable" and self.rng.random() < 0.5:
                created = await self.wait_for_an_offer(op, budget)
            if not created or not created.get("ok"):
                continue
            booking = created["booking"]
            if self.rng.random() < 0.5 and budget.take():
                await self.command(op.trip.key, {
                    "v": 1, "type": "payment_succeeded", "commandId": uuid.uuid4().hex,
                    "actor": load.actor("payments", "SERVICE"), "bookingId": booking["id"],
                    "paymentId": f"pay-{op.key}", "amount": booking["totalPrice"]})
            if self.rng.random() < 0.3 and budget.take():
                cancel = load.Cancel(op.trip, op.rider, booking["id"], uuid.uuid4().hex)
                await self.command(op.trip.key, load.cancel_command(cancel))

    async def wait_for_an_offer(self, op: load.Create, budget: Budget) -> dict[str, Any] | None:
        """Joins the waiting list and tries to accept now and then: the accepted offer's
        reply (a HELD booking), or None after leaving the list (or if it could not join)."""
        joined = await self.command(op.trip.key, {
            "v": 1, "type": "join_waitlist", "commandId": f"join-{op.key}", "actor": load.actor(op.rider),
            "routeId": op.trip.route_id, "travelDate": op.trip.travel_date.isoformat(), "originStopId": op.origin,
            "destinationStopId": op.destination, "seatsBooked": op.seats})
        if not joined or not joined.get("ok"):
            return None
        self.waitlist["joined"] += 1
        entry_id = joined["entry"]["id"]
        on_entry = {"v": 1, "actor": load.actor(op.rider), "entryId": entry_id}
        for _ in range(ACCEPT_TRIES):
            if not budget.take():
                break
            await asyncio.sleep(ACCEPT_EVERY_S * (0.5 + self.rng.random()))
            accepted = await self.command(op.trip.key, {**on_entry, "type": "accept_offer",
                                                        "commandId": uuid.uuid4().hex})
            if accepted is None or accepted.get("ok") or accepted.get("code") != "invalid_transition":
                self.waitlist["accepted" if accepted and accepted.get("ok") else "offer_lost"] += 1
                return accepted  # taken, or the offer expired or the trip was cancelled
        await self.command(op.trip.key, {**on_entry, "type": "leave_waitlist", "commandId": uuid.uuid4().hex})
        self.waitlist["left"] += 1
        return None

    async def http_flow(self, budget: Budget, session: aiohttp.ClientSession, identify) -> None:
        while budget.take():
            op = load.Scenario("chaos", self.trips, 0.0, seed=self.rng.randrange(1 << 30)).next_op()
            command_id = command_id_for(op.rider, op.key, op.trip.key)
            deadline = time.monotonic() + GIVE_UP_AFTER_S
            while time.monotonic() < deadline:
                self.sent += 1
                try:
                    async with session.post(f"{self.stack.base_url}/v1/bookings", json=load.create_body(op),
                                            headers={**identify(op.rider), "Idempotency-Key": op.key}) as response:
                        payload = await response.json(content_type=None)
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                if status >= 500 or status in (409, 429) and payload.get("code") != "seats_unavailable":
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                booking_id = payload["booking"]["id"] if status == 201 else None
                self.clients.http.append((command_id, status, booking_id))
                break

    # -- the killer ------------------------------------------------------------------------

    async def killer(self, every_s: float, sink_every: int, gateway_every: int, done: asyncio.Event) -> None:
        count = 0
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), every_s * (0.5 + self.rng.random()))
            except TimeoutError:
                pass
            if done.is_set():
                break
            count += 1
            victims = ["worker"] + (["sink"] if count % sink_every == 0 else []) \
                + (["gateway"] if count % gateway_every == 0 else [])
            for name in victims:
                service = self.stack.services[name]
                await asyncio.to_thread(service.kill)
                self.kills[name] += 1
                service.start()
            print(f"  kill {count}: {', '.join(victims)} (commands sent so far {self.sent})", flush=True)
            await self.back_at_work(done)

    async def back_at_work(self, done: asyncio.Event, answers: int = 20, timeout_s: float = 90) -> None:
        """The next kill waits until the restarted worker answers again, so each kill
        hits a worker that was doing work (not one still recovering)."""
        mark, deadline = self.answered, time.monotonic() + timeout_s
        while self.answered < mark + answers and not done.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    async def table_queries(self) -> None:
        """The processor's table state, read through query_availability (its replies are
        in the log too, so the checker knows what they must say)."""
        for trip in self.trips:
            command_id = f"check-{uuid.uuid4().hex}"
            await self.command(trip.key, {
                "v": 1, "type": "query_availability", "commandId": command_id,
                "actor": load.actor("route-svc", "SERVICE"), "routeId": trip.route_id,
                "travelDate": trip.travel_date.isoformat()})
            self.clients.queries.append((command_id, trip.capacity))


async def drive(settings: Settings, stack: Stack, args: argparse.Namespace) -> tuple[Chaos, float]:
    direct = load.DirectKafka(settings)
    await direct.start()
    trips = load.make_trips(f"chaos{uuid.uuid4().hex[:6]}", args.trips)
    await load.publish_trips(direct, trips)
    chaos = Chaos(stack, direct, trips, args.seed)
    budget = Budget(args.commands, lambda: chaos.kills["worker"] >= args.min_kills)
    done = asyncio.Event()
    started = time.monotonic()
    killer = asyncio.create_task(chaos.killer(args.kill_every, args.sink_every, args.gateway_every, done))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S * 2)) as session:
        identify = load.jwt_identity(settings.jwt_secret)
        flows = [chaos.kafka_flow(budget) for _ in range(args.kafka_clients)]
        flows += [chaos.http_flow(budget, session, identify) for _ in range(args.http_clients)]
        await asyncio.gather(*flows)
    done.set()
    await killer
    elapsed = time.monotonic() - started
    await asyncio.to_thread(stack.wait_ready)
    await chaos.table_queries()
    await direct.stop()
    return chaos, elapsed


def run(args: argparse.Namespace) -> dict[str, int]:
    settings = get_settings().model_copy(update=SHORT_HOLDS)
    settings_env = {name.upper(): str(value) for name, value in SHORT_HOLDS.items()}
    stack = start_openride(settings, openride_home() / "chaos-run" / uuid.uuid4().hex[:8], settings_env)
    try:
        chaos, elapsed = asyncio.run(drive(settings, stack, args))
        print(f"load done: {chaos.sent} sends (retries included) in {elapsed:.0f} s, kills {chaos.kills}, "
              f"waiting lists {dict(chaos.waitlist)}", flush=True)
        # The worker's clock ticks expire holds for as long as it runs: stopped first, it has
        # written every event there will be before the sink's catch-up is judged, and the
        # truth covers the commands it processed (a tick written as it stopped is not).
        stack.services["worker"].stop()
        processed = committed_offsets(settings, stack.services["worker"].env["WORKER_ID"], topics.COMMANDS)
        caught_up = SinkLag(settings, stack.database_url).wait_caught_up(180)
    finally:
        stack.stop()
    counts = check(settings, stack.database_url, chaos.clients, processed)
    counts["sink_not_caught_up"] = int(not caught_up)
    counts["too_few_kills"] = int(chaos.kills["worker"] < args.min_kills)
    # The waiting list's checks mean something only if riders went through it.
    counts["waitlist_unexercised"] = int(chaos.waitlist["accepted"] == 0)
    print(" ".join(f"{name}={value}" for name, value in counts.items()), flush=True)
    return counts


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--commands", type=int, default=100_000, help="booking flows' commands (retries not counted)")
    result.add_argument("--kill-every", type=float, default=6.0, help="mean seconds between worker kills")
    result.add_argument("--min-kills", type=int, default=30, help="keep the load going until this many worker kills")
    result.add_argument("--sink-every", type=int, default=4, help="the sink dies with every n-th worker kill")
    result.add_argument("--gateway-every", type=int, default=5, help="the gateway dies with every n-th worker kill")
    result.add_argument("--trips", type=int, default=20)
    result.add_argument("--kafka-clients", type=int, default=48)
    result.add_argument("--http-clients", type=int, default=16)
    result.add_argument("--seed", type=int, default=11)
    return result


def main() -> None:
    counts = run(parser().parse_args())
    sys.exit(1 if any(counts.values()) else 0)


if __name__ == "__main__":
    main()
