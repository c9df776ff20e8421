"""`make chaos`: booking load with client retries while the worker is SIGKILLed every few
seconds (and the sink and the gateway now and then), each restarted at once; then the
checker (bench/checker.py) over the command log, topics, tables and Postgres.

    bench/infra.sh chaos [--commands 100000] [--kill-every 6] [--min-kills 30]
    bench/infra.sh chaos --brokers 3 [--min-broker-kills 10] [--broker-kill-every 40]

With `--postgres-outage-s 30` Postgres is stopped once, `--postgres-outage-after-s` into
the load, and started again after that long; meanwhile a read and a booking are tried
over HTTP every second: reads must answer 503 with Retry-After, bookings must be answered
by the worker as always (201, or its refusal: commands need no Postgres), and the
gateway must stay ready (counts outage_reads_wrong, outage_commands_wrong, outage_not_ready).

With `--brokers 3` the run has a three-node cluster (scripts/kafka.sh; every topic with 3
replicas and min.insync.replicas 2), and a second killer SIGKILLs brokers, in turn the
active controller, the leader of a command partition and the group coordinator, each once
every replica is in sync again; most come back after a few seconds, every few-th stays
down for a while (`--broker-long-down-s`), the load going on meanwhile.

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
import statistics
from collections import Counter
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.config import Settings, get_settings
from app.domain.rejections import Code
from app.wire.topics import Topics
from app.transport.admin import ensure_topics, topic_specs
from bench import load
from bench.checker import ClientLog, check, committed_offsets
from bench.cluster import OFFSETS_TOPIC, Cluster
from bench.systems import SinkLag, openride_home, our_postgres, postgres, start_openride
from gateway.dispatch import command_id_for
from devstack.stack import Stack

# Short holds, so the run sees expiries. The services get them through their environment
# and the checker through its settings: its truth must use the policy they used.
SHORT_HOLDS = {"hold_minutes": 1, "payment_hold_minutes": 2, "offer_minutes": 1}

RETRY_PAUSE_S = 0.5
# A rider on the waiting list tries to accept this often, this many times, then leaves.
ACCEPT_EVERY_S = 3.0
ACCEPT_TRIES = 20
ATTEMPT_TIMEOUT_S = 5.0
GIVE_UP_AFTER_S = 300.0


BROKER_ROLES = ("controller", "leader", "coordinator")
DOMAIN_CODES = frozenset(code.value for code in Code)  # refusals only the worker gives
# A command sent this soon after a broker kill counts towards what the kill cost clients.
AFTER_KILL_S = 10.0


@dataclass
class BrokerKill:
    node: int
    role: str  # what it was killed as (BROKER_ROLES)
    killed_at: float  # time.monotonic()
    down_s: float  # how long it was kept down
    failover_s: float = 0.0  # from the kill until every partition it led had another leader
    back_s: float = 0.0  # from the kill until its client port accepted connections again
    in_sync_s: float = 0.0  # from the kill until every replica of every partition was in sync again


@dataclass
class Probe:
    """One HTTP request made while Postgres was down."""

    kind: str  # "read", "command" or "ready"
    status: int  # 0: no HTTP answer
    retry_after: str | None
    seconds: float
    code: str | None = None  # an error answer's code

    @property
    def as_expected(self) -> bool:
        if self.kind == "read":
            return self.status == 503 and self.retry_after is not None
        if self.kind == "ready":
            return self.status == 200
        return self.status == 201 or self.code in DOMAIN_CODES  # the worker's answer, as without the outage


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
        self.worker_back_s: list[float] = []  # per worker kill: until it answered again
        self.kills: dict[str, int] = {"worker": 0, "sink": 0, "gateway": 0, "broker": 0}
        self.waitlist: Counter[str] = Counter()  # what riders on waiting lists got
        self.broker_kills: list[BrokerKill] = []
        self.answer_times: list[tuple[float, float]] = []  # (first send, answer) of each Kafka command
        self.exits: dict[str, int] = {}  # services that exited by themselves (restarted, as an orchestrator would)
        self.restarting = asyncio.Lock()
        self.probes: list[Probe] = []
        self.outage_over = asyncio.Event()
        self.probed: list[load.TripSpec] = []  # the trip the Postgres outage's probes book on

    # -- clients ---------------------------------------------------------------------------

    async def command(self, key: str, document: dict[str, Any]) -> dict[str, Any] | None:
        """Sends until answered, always with the same command id."""
        started = time.monotonic()
        while time.monotonic() < started + GIVE_UP_AFTER_S:
            self.sent += 1
            try:
                body = await self.direct.request(key, document, ATTEMPT_TIMEOUT_S)
            except TimeoutError:
                continue
            self.clients.kafka[document["commandId"]].append(body)
            self.answered += 1
            self.answer_times.append((started, time.monotonic()))
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
        # ACCEPT_TRIES tries whatever is left of the budget (each still counts against it): a
        # rider on the list waits about a minute for an offer even as the load winds down,
        # long enough for the one-minute holds ahead of them to run out, which a short run
        # (the tests') otherwise never waited for.
        for _ in range(ACCEPT_TRIES):
            budget.take()
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

    # -- Postgres down ---------------------------------------------------------------------

    async def postgres_outage(self, args: argparse.Namespace, session: aiohttp.ClientSession, identify) -> None:
        await asyncio.sleep(args.postgres_outage_after_s)
        # A trip of its own, with seats left, so that the bookings tried meanwhile can be accepted.
        self.probed = load.make_trips(f"probe{uuid.uuid4().hex[:6]}", 1)
        await load.publish_trips(self.direct, self.probed)
        await asyncio.to_thread(postgres, "stop")
        stopped = time.monotonic()
        print(f"  postgres stopped (commands sent so far {self.sent})", flush=True)
        try:
            while time.monotonic() - stopped < args.postgres_outage_s:
                await asyncio.gather(*(self.probe(session, identify, kind) for kind in ("read", "command", "ready")),
                                     asyncio.sleep(1.0))
        finally:
            await asyncio.to_thread(postgres, "start")
            self.trips.extend(self.probed)  # its state is checked with the others' at the end
            self.outage_over.set()
        print(f"  postgres started again after {time.monotonic() - stopped:.0f} s", flush=True)

    async def probe(self, session: aiohttp.ClientSession, identify, kind: str) -> None:
        op = load.Scenario("probe", self.probed, 0.0, seed=self.rng.randrange(1 << 30)).next_op()
        started = time.monotonic()
        status, retry_after, payload = 0, None, {}
        try:
            if kind == "read":
                request = session.get(f"{self.stack.base_url}/v1/bookings", headers=identify(op.rider))
            elif kind == "ready":
                request = session.get(f"{self.stack.base_url}/health/ready")
            else:
                request = session.post(f"{self.stack.base_url}/v1/bookings", json=load.create_body(op),
                                       headers={**identify(op.rider), "Idempotency-Key": op.key})
            async with request as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError):
            pass
        code = payload.get("code") if isinstance(payload, dict) else None
        self.probes.append(Probe(kind, status, retry_after, time.monotonic() - started, code))
        if kind == "command" and status == 201:  # accepted: the checker must find it
            self.clients.http.append((command_id_for(op.rider, op.key, op.trip.key), 201, payload["booking"]["id"]))

    def outage_report(self) -> list[str]:
        lines = []
        for kind in ("read", "command", "ready"):
            probes = [p for p in self.probes if p.kind == kind]
            by_status = {status: sum(p.status == status for p in probes) for status in sorted({p.status for p in probes})}
            codes = sorted({p.code for p in probes if p.code})
            lines.append(f"  {kind}s: {len(probes)}, by status {by_status} (codes {codes}), with Retry-After "
                         f"{sum(p.retry_after is not None for p in probes)}, answered in median "
                         f"{statistics.median(p.seconds for p in probes) if probes else 0:.2f} s, max "
                         f"{max((p.seconds for p in probes), default=0):.2f} s")
        return lines

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
            killed_at = time.monotonic()
            for name in victims:
                service = self.stack.services[name]
                async with self.restarting:
                    await asyncio.to_thread(service.kill)
                    self.kills[name] += 1
                    service.start()
            back = await self.back_at_work(done)
            if back is not None:
                self.worker_back_s.append(back - killed_at)
            print(f"  kill {count}: {', '.join(victims)} (commands sent so far {self.sent}); the worker answered "
                  f"again after {'?' if back is None else f'{back - killed_at:.1f}'} s", flush=True)

    async def restart_exited(self, done: asyncio.Event) -> None:
        """Restarts a service that exited by itself within a second, as an orchestrator
        would, and counts it: none should (the killer's own kills hold `restarting`)."""
        while not done.is_set():
            async with self.restarting:
                for name, service in self.stack.services.items():
                    if service.process is not None and service.process.poll() is not None:
                        print(f"  {name} exited by itself ({service.process.returncode}): restarting it\n"
                              f"{service.log_tail(15)}", flush=True)
                        self.exits[name] = self.exits.get(name, 0) + 1
                        service.start()
            try:
                await asyncio.wait_for(done.wait(), 1.0)
            except TimeoutError:
                pass

    async def broker_killer(self, cluster: Cluster, args: argparse.Namespace, done: asyncio.Event) -> None:
        """Kills a broker once every replica is in sync; keeps it down `broker_down_s` (and
        until its partitions have other leaders), or `broker_long_down_s` every
        `broker_long_every`-th time; restarts it. It runs until the load is done, and never
        leaves a broker down."""
        count = 0
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), args.broker_kill_every * (0.5 + self.rng.random()))
            except TimeoutError:
                pass
            if done.is_set():
                break
            await self.restart_exited_brokers(cluster)
            await asyncio.to_thread(cluster.wait_fully_replicated)
            role = BROKER_ROLES[count % len(BROKER_ROLES)]
            count += 1
            down_s = args.broker_long_down_s if count % args.broker_long_every == 0 else args.broker_down_s
            kill = BrokerKill(await asyncio.to_thread(self.broker_as, cluster, role), role, time.monotonic(), down_s)
            await asyncio.to_thread(cluster.kill, kill.node)
            self.kills["broker"] += 1
            self.broker_kills.append(kill)
            print(f"  broker kill {count}: node {kill.node} ({role}), down {down_s:.0f} s "
                  f"(commands sent so far {self.sent})", flush=True)
            # Down at least until its partitions have other leaders, so that the failover is measured.
            failover = asyncio.create_task(asyncio.to_thread(cluster.wait_led_elsewhere, kill.node))
            await asyncio.sleep(down_s)
            kill.failover_s = await failover
            await asyncio.to_thread(cluster.start, kill.node)
            kill.back_s = time.monotonic() - kill.killed_at
            await asyncio.to_thread(cluster.wait_fully_replicated)
            kill.in_sync_s = time.monotonic() - kill.killed_at
            print(f"  broker {kill.node} back after {kill.back_s:.1f} s, every replica in sync after "
                  f"{kill.in_sync_s:.1f} s", flush=True)

    async def restart_exited_brokers(self, cluster: Cluster) -> None:
        for node in sorted(set(cluster.nodes) - await asyncio.to_thread(cluster.running)):
            print(f"  broker {node} exited by itself: restarting it", flush=True)
            self.exits["broker"] = self.exits.get("broker", 0) + 1
            await asyncio.to_thread(cluster.start, node)

    def broker_as(self, cluster: Cluster, role: str) -> int:
        if role == "controller":
            return cluster.active_controller()
        if role == "coordinator":  # the offsets topic has one partition: every group's coordinator
            return cluster.leaders(OFFSETS_TOPIC)[0]
        return self.rng.choice(sorted(cluster.leaders(self.direct.topics.commands).items()))[1]

    def longest_wait_after(self, kill: BrokerKill) -> float:
        """The longest a client's command waited past the kill for its answer (retries
        included), over the commands in flight at the kill or sent within AFTER_KILL_S of
        it: what the kill cost a client (a worker kill close by adds its own)."""
        waits = [answered - max(sent, kill.killed_at) for sent, answered in self.answer_times
                 if sent <= kill.killed_at + AFTER_KILL_S and answered >= kill.killed_at]
        return max(waits, default=0.0)

    def broker_report(self) -> list[str]:
        lines = [f"  node {k.node} as {k.role}: down {k.down_s:.0f} s; its partitions led elsewhere after "
                 f"{k.failover_s:.1f} s; back {k.back_s:.1f} s; every replica in sync {k.in_sync_s:.1f} s; "
                 f"longest client wait {self.longest_wait_after(k):.1f} s" for k in self.broker_kills]
        for role in ("all", *BROKER_ROLES):
            kills = [k for k in self.broker_kills if role in ("all", k.role)]
            if kills:
                lines.append(f"  medians ({role}, {len(kills)}): led elsewhere "
                             f"{statistics.median(k.failover_s for k in kills):.1f} s, back "
                             f"{statistics.median(k.back_s for k in kills):.1f} s, in sync "
                             f"{statistics.median(k.in_sync_s for k in kills):.1f} s, longest client wait "
                             f"{statistics.median(self.longest_wait_after(k) for k in kills):.1f} s")
        return lines

    async def back_at_work(self, done: asyncio.Event, answers: int = 20, timeout_s: float = 90) -> float | None:
        """The next kill waits until the restarted worker answers again, so each kill
        hits a worker that was doing work (not one still recovering). Returns when its
        first answer came (monotonic), None if none came."""
        mark, deadline = self.answered, time.monotonic() + timeout_s
        first = None
        while self.answered < mark + answers and not done.is_set() and time.monotonic() < deadline:
            if first is None and self.answered > mark:
                first = time.monotonic()
            await asyncio.sleep(0.05)
        if first is None and self.answered > mark:
            first = time.monotonic()
        return first

    def restart_report(self) -> str:
        times = sorted(self.worker_back_s)
        if not times:
            return "worker restarts: none timed"
        return (f"worker restarts (from the SIGKILL to the first answer after it, {len(times)}): median "
                f"{statistics.median(times):.1f} s, 90th percentile {times[int(0.9 * (len(times) - 1))]:.1f} s, "
                f"max {times[-1]:.1f} s; each: {', '.join(f'{t:.1f}' for t in times)}")

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


async def drive(settings: Settings, stack: Stack, args: argparse.Namespace,
                cluster: Cluster | None) -> tuple[Chaos, float]:
    direct = load.DirectKafka(settings)
    await direct.start()
    trips = load.make_trips(f"chaos{uuid.uuid4().hex[:6]}", args.trips)
    await load.publish_trips(direct, trips)
    chaos = Chaos(stack, direct, trips, args.seed)
    budget = Budget(args.commands, lambda: enough_kills(chaos, args) and chaos.outage_over.is_set())
    done = asyncio.Event()
    started = time.monotonic()
    killer = asyncio.create_task(chaos.killer(args.kill_every, args.sink_every, args.gateway_every, done))
    brokers = asyncio.create_task(chaos.broker_killer(cluster, args, done)) if cluster else None
    watchdog = asyncio.create_task(chaos.restart_exited(done))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S * 2)) as session:
        identify = load.jwt_identity(settings)
        flows = [chaos.kafka_flow(budget) for _ in range(args.kafka_clients)]
        flows += [chaos.http_flow(budget, session, identify) for _ in range(args.http_clients)]
        if args.postgres_outage_s:
            flows.append(chaos.postgres_outage(args, session, identify))
        else:
            chaos.outage_over.set()
        await asyncio.gather(*flows)
    done.set()
    await killer
    await watchdog
    if brokers is not None:
        await brokers
    elapsed = time.monotonic() - started
    await asyncio.to_thread(stack.wait_ready)
    await chaos.table_queries()
    await direct.stop()
    return chaos, elapsed


def enough_kills(chaos: Chaos, args: argparse.Namespace) -> bool:
    brokers_enough = args.brokers == 1 or chaos.kills["broker"] >= args.min_broker_kills
    return chaos.kills["worker"] >= args.min_kills and brokers_enough


def run(args: argparse.Namespace, cluster: Cluster | None = None) -> dict[str, int]:
    """`cluster`: the brokers to kill when args.brokers > 1 (by default the cluster
    scripts/isolated.sh started for this process)."""
    update: dict[str, Any] = dict(SHORT_HOLDS)
    if args.brokers > 1:
        cluster = cluster or Cluster.from_environment()
        if cluster.size != args.brokers:
            raise SystemExit(f"--brokers {args.brokers}, but the cluster has {cluster.size} (KAFKA_BROKERS)")
        update |= {"kafka_bootstrap": cluster.bootstrap, "topic_replication_factor": min(cluster.size, 3)}
    settings = get_settings().model_copy(update=update)
    if args.postgres_outage_s and not our_postgres(settings.database_url):
        raise SystemExit("--postgres-outage-s stops Postgres: only the one scripts/isolated.sh started for this run")
    ensure_topics(settings, topic_specs(settings))
    settings_env = {name.upper(): str(value) for name, value in update.items()}
    stack = start_openride(settings, openride_home() / "chaos-run" / uuid.uuid4().hex[:8], settings_env)
    try:
        chaos, elapsed = asyncio.run(drive(settings, stack, args, cluster if args.brokers > 1 else None))
        print(f"load done: {chaos.sent} sends (retries included) in {elapsed:.0f} s, kills {chaos.kills}, "
              f"services that exited by themselves {chaos.exits}, waiting lists {dict(chaos.waitlist)}", flush=True)
        print(chaos.restart_report(), flush=True)
        if chaos.broker_kills:
            print("broker kills:\n" + "\n".join(chaos.broker_report()), flush=True)
        if chaos.probes:
            print("while Postgres was down:\n" + "\n".join(chaos.outage_report()), flush=True)
        # The worker's clock ticks expire holds for as long as it runs: stopped first, it has
        # written every event there will be before the sink's catch-up is judged, and the
        # truth covers the commands it processed (a tick written as it stopped is not).
        stack.services["worker"].stop()
        processed = committed_offsets(settings, stack.services["worker"].env["WORKER_ID"],
                                      Topics.of(settings).commands)
        caught_up = SinkLag(settings, stack.database_url).wait_caught_up(180)
    finally:
        stack.stop()
    counts = check(settings, stack.database_url, chaos.clients, processed)
    counts["sink_not_caught_up"] = int(not caught_up)
    counts["too_few_kills"] = int(not enough_kills(chaos, args))
    # The waiting list's checks mean something only if riders went through it.
    counts["waitlist_unexercised"] = int(chaos.waitlist["accepted"] == 0)
    counts["unexpected_exits"] = sum(chaos.exits.values())
    counts["outage_reads_wrong"] = sum(not p.as_expected for p in chaos.probes if p.kind == "read")
    counts["outage_commands_wrong"] = sum(not p.as_expected for p in chaos.probes if p.kind == "command")
    counts["outage_not_ready"] = sum(not p.as_expected for p in chaos.probes if p.kind == "ready")
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
    result.add_argument("--brokers", type=int, default=1,
                        help="Kafka nodes (bench/infra.sh starts them; > 1: brokers are killed too)")
    result.add_argument("--min-broker-kills", type=int, default=10, help="with --brokers > 1: at least this many")
    result.add_argument("--broker-kill-every", type=float, default=40.0,
                        help="mean seconds between broker kills (each waits for every replica to be in sync)")
    result.add_argument("--broker-down-s", type=float, default=3.0, help="how long a killed broker stays down")
    result.add_argument("--broker-long-down-s", type=float, default=60.0,
                        help="how long every --broker-long-every-th killed broker stays down")
    result.add_argument("--broker-long-every", type=int, default=4)
    result.add_argument("--postgres-outage-s", type=float, default=0.0,
                        help="stop Postgres this long once, under load (0: never)")
    result.add_argument("--postgres-outage-after-s", type=float, default=20.0,
                        help="seconds into the load when Postgres is stopped")
    return result


def main() -> None:
    counts = run(parser().parse_args())
    sys.exit(1 if any(counts.values()) else 0)


if __name__ == "__main__":
    main()
