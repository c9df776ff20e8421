"""`make bench`: the Kafka-native system over HTTP (through the gateway) against two
row-lock baselines (bare, and like-for-like: the gateway's work per request too), same
generator, same machine, same run; optionally the direct Kafka path as well.

A run is one phase per added round-trip time (`--rtt-ms`, default 0 and 0.5): each phase
is a process of its own with its own topics, a fresh OpenRide stack and fresh baselines,
all of them reaching Postgres and Kafka through bench/delayproxy when the RTT is not 0.
In a phase, for each scenario (hot trip, spread over 1,000 trips) and each target,
offered load ramps up in steps; a step that is not sustained (see `sustained`) ends the
ramp. `--runs` repeats the phases (alternating), and the report gives medians. The report
(markdown, JSON, PNG plots) goes to docs/benchmarks/.

    bench/infra.sh run [--quick] [--runs 3] [--rtt-ms 0,0.5] [--targets http,baseline,baseline-lfl]
                       [--step-seconds 6] [--out docs/benchmarks]
    bench/infra.sh run --compare NAME[@COMMIT]:... NAME:... [--scenario hot|spread] [--runs 3]

`--compare` runs the direct path only, for worker variants side by side (bench/variants.py):
each run of each variant in a process and topic namespace of its own, one worker, the
same warm-up and ramp; the sustained rate, its ratio to the first variant run by run,
and the latencies at each rate.
"""

import argparse
import asyncio
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from app.config import get_settings
from app.wire.commands import TripIn
from app.tables.codec import trip_to_json
from bench import load
from bench.baseline.app import seed_trips
from bench.invariants import availability_problems, baseline_oversold, postgres_oversold
from bench.systems import CpuMeter, Network, SinkLag, infra_pids, openride_home, start_baseline, start_openride
from bench.variants import parse_variant

ROOT = Path(__file__).resolve().parent.parent
# Steps close together up to 1,000/s, where every target has saturated so far on the
# 2-core machine, so that the sustained rate is told to within a quarter.
HTTP_RATES = [100, 250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2500, 3000]
RATES = {
    "direct": [100, 250, 500, 750, 1000, 1250, 1500, 2000, 3000, 4000, 5000, 6000, 8000],
    "http": HTTP_RATES, "baseline": HTTP_RATES, "baseline-lfl": HTTP_RATES,
}
QUICK_HTTP_RATES = [250, 500, 1000, 1500, 2000]
QUICK_RATES = {
    "direct": [250, 500, 1000, 2000, 4000],
    "http": QUICK_HTTP_RATES, "baseline": QUICK_HTTP_RATES, "baseline-lfl": QUICK_HTTP_RATES,
}
TARGETS = ("http", "baseline", "baseline-lfl")
BASELINE_MODES = {"baseline": "bare", "baseline-lfl": "like-for-like"}
# Unmeasured load before the ramps: a fresh broker's JVM compiles its hot paths during its
# first minutes, and in earlier runs that took most of a core away from the first ramp.
WARMUP_RATE = 200
WARMUP_TRIPS = 20
# A step is sustained when nearly everything offered was answered, at the pace offered
# (a system falling behind still answers everything in the end, with a queue growing
# through the step: p50 0.7 s at a rate whose step below answered in 5 ms), and in time.
MIN_SERVED_SHARE = 0.95
MIN_PACE_SHARE = 0.95
MAX_ERROR_SHARE = 0.01
MAX_P99_S = 1.0


@dataclass
class Step:
    scenario: str
    target: str
    rate: float
    offered: int
    ok: int
    rejected: int
    errors: int
    throughput: float  # answers/s, from the step's first intended send to its last answer
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    cpu: dict[str, float]  # % of one core, per process
    load_avg: float
    started: float  # monotonic
    ended: float
    sustained: bool
    rtt_ms: float = 0.0
    run: int = 1


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def summarize(scenario: str, target: str, rate: float, samples: list[load.Sample], start: float,
              cpu: dict[str, float], wall_start: float, wall_end: float) -> Step:
    latencies = sorted(s.latency * 1000 for s in samples)
    served = [s for s in samples if s.status != "error"]
    last = max(s.done for s in samples)
    step = Step(
        scenario, target, rate, len(samples),
        ok=sum(s.status == "ok" for s in samples), rejected=sum(s.status == "rejected" for s in samples),
        errors=sum(s.status == "error" for s in samples),
        throughput=len(served) / max(last - start, 1e-9),
        p50_ms=percentile(latencies, 0.50), p95_ms=percentile(latencies, 0.95), p99_ms=percentile(latencies, 0.99),
        p999_ms=percentile(latencies, 0.999), max_ms=latencies[-1],
        cpu=cpu, load_avg=os.getloadavg()[0], started=wall_start, ended=wall_end, sustained=False)
    step.sustained = (len(served) >= MIN_SERVED_SHARE * step.offered and step.errors <= MAX_ERROR_SHARE * step.offered
                      and step.throughput >= MIN_PACE_SHARE * rate and step.p99_ms <= MAX_P99_S * 1000)
    return step


def cpu_percent(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    return {name: round(100 * (after[name] - before.get(name, 0.0)) / seconds, 1) for name in after}


async def ramp(target, scenario: load.Scenario, rates: list[int], step_s: float, meter: CpuMeter,
               timeline: list[tuple[str, float]]) -> list[Step]:
    steps = []
    for rate in rates:
        before, wall_start = meter.snapshot(), time.monotonic()
        samples, start = await load.run_step(target, scenario, rate, step_s)
        wall_end = time.monotonic()
        cpu = cpu_percent(before, meter.snapshot(), wall_end - wall_start)
        loop_offset = wall_start - start + 0.05  # loop time -> monotonic (both monotonic clocks here)
        timeline.extend((f"{scenario.name}/{target.name}", s.done + loop_offset) for s in samples
                        if s.status != "error")
        step = summarize(scenario.name, target.name, rate, samples, start, cpu, wall_start, wall_end)
        steps.append(step)
        print(f"  {scenario.name:6} {target.name:8} {rate:6.0f}/s -> {step.throughput:7.0f}/s "
              f"p50 {step.p50_ms:7.1f} p99 {step.p99_ms:7.1f} ms ok {step.ok} rej {step.rejected} "
              f"err {step.errors} cpu {step.cpu} load {step.load_avg:.1f}", flush=True)
        if not step.sustained:
            break
    return steps


def seed_baseline(database_url: str, trips: list[load.TripSpec]) -> None:
    seed_trips(database_url, [
        (trip.key, trip_to_json(TripIn.model_validate(trip.body()).to_trip(trip.route_id, trip.travel_date)))
        for trip in trips])


async def hot_trip_availability(direct: load.DirectKafka, trips: list[load.TripSpec]) -> int:
    """Invariants 1 and 2 as the processor itself reports them (query_availability)."""
    problems = 0
    for trip in trips:
        command = {"v": 1, "type": "query_availability", "commandId": f"check-{trip.key}-{time.time_ns()}",
                   "actor": load.actor("route-svc", "SERVICE"), "routeId": trip.route_id,
                   "travelDate": trip.travel_date.isoformat()}
        reply = await direct.request(trip.key, command, timeout=30)
        problems += availability_problems(reply["availability"], trip.capacity)
    return problems


async def warm_up(targets: dict[str, Any], direct: load.DirectKafka, baselines: dict[str, Any],
                  seconds: float) -> None:
    """Every target gets the same unmeasured load, on trips of its own."""
    for name, target in targets.items():
        scenario = load.Scenario(f"warm-up-{name}", load.make_trips(f"warmup-{name}", WARMUP_TRIPS), cancel_share=0.3)
        if name in baselines:
            seed_baseline(baselines[name].database_url, scenario.trips)
        else:
            await load.publish_trips(direct, scenario.trips)
        samples, _ = await load.run_step(target, scenario, WARMUP_RATE, seconds / len(targets))
        answered = sum(s.status != "error" for s in samples)
        print(f"  warm-up {name:8} {WARMUP_RATE}/s for {seconds / len(targets):.0f} s: {answered} of {len(samples)} "
              "answered (not measured)", flush=True)


async def bench(args: argparse.Namespace, stack, baselines: dict[str, Any], lag: SinkLag,
                meter: CpuMeter) -> dict[str, Any]:
    settings = get_settings()
    rates = QUICK_RATES if args.quick else RATES
    direct = load.DirectKafka(settings)
    await direct.start()
    jwt = load.jwt_identity(settings)
    available = {
        "direct": direct,
        "http": load.Http("http", stack.base_url, jwt),
        "baseline": load.Http("baseline", baselines["baseline"].base_url, load.rider_header),
        "baseline-lfl": load.Http("baseline-lfl", baselines["baseline-lfl"].base_url, jwt),
    }
    targets = {name: available[name] for name in args.targets}
    if args.warmup_seconds > 0:
        await warm_up(targets, direct, baselines, args.warmup_seconds)
    steps: list[Step] = []
    timeline: list[tuple[str, float]] = []
    windows: dict[str, tuple[float, float]] = {}
    hot_trips: list[load.TripSpec] = []
    for make in (load.hot_trip, load.spread):
        for name, target in targets.items():
            scenario = make(f"{name}-{make.__name__}")
            if name in baselines:
                seed_baseline(baselines[name].database_url, scenario.trips)
            else:
                await load.publish_trips(direct, scenario.trips)
            if make is load.hot_trip and name not in baselines:
                hot_trips.extend(scenario.trips)
            print(f"{scenario.name} / {name} (+{args.rtt_ms} ms RTT):", flush=True)
            series = await ramp(target, scenario, rates[name], args.step_seconds, meter, timeline)
            for step in series:
                step.rtt_ms, step.run = args.rtt_ms, args.run
            steps.extend(series)
            windows[f"{scenario.name}/{name}"] = (series[0].started, series[-1].ended)
    caught_up = await asyncio.to_thread(lag.wait_caught_up, 180)
    checks = {
        "openride": {**postgres_oversold(stack.database_url), "sink_caught_up": caught_up,
                     "hot_trip_availability_problems": await hot_trip_availability(direct, hot_trips)},
        **{name: baseline_oversold(baseline.database_url) for name, baseline in baselines.items()},
    }
    for target in available.values():
        await target.stop()
    sink = {key: lag.lags(*window) for key, window in windows.items() if key.split("/")[1] not in baselines}
    return {"steps": [asdict(s) for s in steps], "checks": checks, "timeline": timeline,
            "sink_lag_s": {key: {"max": max(v, default=0.0), "p95": percentile(sorted(v), 0.95)}
                           for key, v in sink.items()}}


# -- worker variants side by side, the direct path only --------------------------------------


async def direct_ramp(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One worker (of this process's variant) in this process's topic namespace, the
    direct path ramped on one scenario, after the same warm-up as the full bench."""
    from app.transport.admin import ensure_topics, topic_specs
    from devstack.processes import worker_service

    settings = get_settings()
    ensure_topics(settings, topic_specs(settings))
    workdir = openride_home() / "bench-run" / settings.topic_namespace
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    worker = worker_service("worker", workdir, {"WORKER_ID": f"bench-{settings.topic_namespace[:-1]}",
                                                "WORKER_INSTANCE_ID": "bench-worker"}, args.tree)
    worker.start()
    direct = load.DirectKafka(settings)
    try:
        await direct.start()
        meter = CpuMeter({"worker": worker.process.pid, "generator": os.getpid(), **infra_pids(openride_home())})
        warm = load.Scenario("warm-up", load.make_trips("warmup", WARMUP_TRIPS), cancel_share=0.3)
        await load.publish_trips(direct, warm.trips)
        await load.run_step(direct, warm, WARMUP_RATE, args.warmup_seconds)
        scenario = (load.hot_trip if args.scenario == "hot" else load.spread)(f"direct-{args.scenario}")
        await load.publish_trips(direct, scenario.trips)
        steps = await ramp(direct, scenario, (QUICK_RATES if args.quick else RATES)["direct"], args.step_seconds,
                           meter, [])
        return [asdict(step) for step in steps]
    finally:
        await direct.stop()
        worker.stop()


def compare_workers(args: argparse.Namespace) -> None:
    """Each variant's ramp in a process and topic namespace of its own, the variants
    alternating run by run; the sustained rate and the latencies side by side."""
    variants = [parse_variant(text) for text in args.compare]
    results: dict[str, list[list[dict[str, Any]]]] = {variant.name: [] for variant in variants}
    for number in range(args.runs or 3):
        for variant in variants:
            env = {**os.environ, **variant.env, "TOPIC_NAMESPACE": f"cmp{uuid.uuid4().hex[:6]}."}
            argv = [sys.executable, "-m", "bench.run", "--direct-only", "--tree", str(variant.tree), "--scenario",
                    args.scenario, "--step-seconds", str(args.step_seconds), "--warmup-seconds",
                    str(args.warmup_seconds), *(["--quick"] if args.quick else [])]
            done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{variant.name}: run failed:\n{done.stdout}")
            steps = orjson.loads(done.stdout.strip().splitlines()[-1])
            results[variant.name].append(steps)
            print(f"run {number + 1} {variant.name}: sustained {sustained_rate(steps):.0f}/s", flush=True)
    print(f"\n| variant ({args.scenario}, direct, median of {args.runs or 3}) | sustained answers/s (runs) | ratio to "
          f"the first (run by run) | p50 / p99 ms at each rate (median) |\n|---|---:|---|---|")
    first = results[variants[0].name]
    for name, runs in results.items():
        rates = [sustained_rate(steps) for steps in runs]
        ratios = [mine / max(theirs, 1) for mine, theirs in zip(rates, map(sustained_rate, first), strict=True)]
        latencies = {}
        for steps in runs:
            for step in steps:
                latencies.setdefault(step["rate"], []).append((step["p50_ms"], step["p99_ms"]))
        shown = ", ".join(f"{rate:.0f}/s {statistics.median(p[0] for p in ps):.0f} / {statistics.median(p[1] for p in ps):.0f}"
                          for rate, ps in sorted(latencies.items()) if len(ps) == len(runs))
        print(f"| {name} | {statistics.median(rates):.0f} ({', '.join(f'{r:.0f}' for r in rates)}) | "
              f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}) | {shown} |")


def sustained_rate(steps: list[dict[str, Any]]) -> float:
    return max((step["rate"] for step in steps if step["sustained"]), default=0.0)


def machine() -> dict[str, Any]:
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"cpu": cpu_model, "cores": os.cpu_count(), "memory_gib": round(memory_kb / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release(), "commit": commit.stdout.strip(),
            "load_avg_before": os.getloadavg()}


def run_phase(args: argparse.Namespace) -> None:
    """One run at one RTT, in this process (its topics are those of TOPIC_NAMESPACE)."""
    from app.transport.admin import ensure_topics, topic_specs

    settings = get_settings()
    ensure_topics(settings, topic_specs(settings))
    workdir = openride_home() / f"bench-run-{args.run}-{args.rtt_ms}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    network = Network.start(settings, args.rtt_ms, workdir)
    stack = baselines = None
    try:
        stack = start_openride(settings, workdir, {"TOPIC_NAMESPACE": settings.topic_namespace}, network)
        baselines = {name: start_baseline(settings, workdir, mode, network) for name, mode in BASELINE_MODES.items()}
        lag = SinkLag(settings, stack.database_url).start()
        pids = {name: service.process.pid for name, service in stack.services.items()}
        pids |= {name: baseline.service.process.pid for name, baseline in baselines.items()}
        pids |= {"generator": os.getpid(), **infra_pids(openride_home())}
        if network.proxy is not None:
            pids["delayproxy"] = network.proxy.pid
        meter = CpuMeter(pids, with_children=frozenset({"postgres", "gateway"}))
        try:
            results = asyncio.run(bench(args, stack, baselines, lag, meter))
        finally:
            lag.stop()
        results["added_rtt_ms"] = measured_rtt(settings, network)
    finally:
        for baseline in (baselines or {}).values():
            baseline.service.stop()
        if stack is not None:
            stack.stop()
        network.stop()
    args.phase_out.write_bytes(orjson.dumps(results))


def measured_rtt(settings, network: Network, samples: int = 400) -> float:
    """The median added time of a Postgres round trip (SELECT 1) through the network,
    against a direct one, in ms."""
    import psycopg

    def median_rtt(url: str) -> float:
        with psycopg.connect(url, autocommit=True) as conn:
            times = []
            for _ in range(samples):
                started = time.perf_counter()
                conn.execute("SELECT 1")
                times.append(time.perf_counter() - started)
        return sorted(times)[len(times) // 2]

    return round(1000 * (median_rtt(network.database_url(settings.database_url))
                         - median_rtt(settings.database_url)), 3)


def phase(args: argparse.Namespace, run: int, rtt_ms: float, scratch: Path, warmup_s: float) -> dict[str, Any]:
    out = scratch / f"run{run}-rtt{rtt_ms}.json"
    argv = [sys.executable, "-m", "bench.run", "--phase-out", str(out), "--run", str(run), "--rtt-ms", str(rtt_ms),
            "--targets", ",".join(args.targets), "--step-seconds", str(args.step_seconds),
            "--warmup-seconds", str(warmup_s), *(["--quick"] if args.quick else [])]
    env = {**os.environ, "TOPIC_NAMESPACE": f"bench{run}r{str(rtt_ms).replace('.', '')}."}
    subprocess.run(argv, env=env, check=True)
    return orjson.loads(out.read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter steps, one run (a smoke run)")
    parser.add_argument("--step-seconds", type=float, default=None, help="seconds per rate step (default 6, quick 3)")
    parser.add_argument("--warmup-seconds", type=float, default=45.0,
                        help="unmeasured load before the first phase's ramps, shared by the targets (0: none); "
                             "a third of it before each later phase")
    parser.add_argument("--runs", type=int, default=None, help="repetitions of the phases (default 3, quick 1)")
    parser.add_argument("--rtt-ms", default="0,0.5", help="added round-trip times to Postgres and Kafka, ms")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"of direct,{','.join(TARGETS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--phase-out", type=Path, help=argparse.SUPPRESS)  # set for a phase's own process
    parser.add_argument("--run", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs="+", metavar="NAME[@COMMIT]:SETTING=VALUE,...",
                        help="instead of the phases: the direct path only, ramped once per run for each of these "
                             "worker variants (bench/variants.py), alternating")
    parser.add_argument("--scenario", choices=("hot", "spread"), default="hot", help="with --compare")
    parser.add_argument("--direct-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.step_seconds = args.step_seconds or (3.0 if args.quick else 6.0)
    if args.direct_only:
        print(orjson.dumps(asyncio.run(direct_ramp(args))).decode())
        return
    if args.compare:
        compare_workers(args)
        return
    args.targets = args.targets.split(",")
    if args.phase_out is not None:
        args.rtt_ms = float(args.rtt_ms)
        run_phase(args)
        return
    runs = args.runs or (1 if args.quick else 3)
    rtts = [float(rtt) for rtt in args.rtt_ms.split(",")]
    info = machine()
    info["warmup_s"] = args.warmup_seconds
    info["command"] = "make bench" + (" ARGS=--quick" if args.quick else "") + \
        f"  (bench/infra.sh run {shlex.join(sys.argv[1:])})"
    started = time.monotonic()
    scratch = openride_home() / "bench-phases"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    phases = []
    for run in range(1, runs + 1):
        for rtt_ms in (rtts if run % 2 else rtts[::-1]):  # alternating, so neither RTT always goes first
            warmup = args.warmup_seconds if not phases else args.warmup_seconds / 3
            print(f"== run {run}, +{rtt_ms} ms RTT", flush=True)
            phases.append({"run": run, "rtt_ms": rtt_ms, **phase(args, run, rtt_ms, scratch, warmup)})
    info["load_avg_after"] = os.getloadavg()
    info["duration_s"] = round(time.monotonic() - started)
    results = {"phases": phases, "machine": info, "quick": args.quick, "targets": args.targets, "rtts": rtts,
               "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_bytes(orjson.dumps(
        {**results, "phases": [{k: v for k, v in p.items() if k != "timeline"} for p in phases]},
        option=orjson.OPT_INDENT_2))
    from bench.report import write_report

    write_report(results, args.out)
    failed = [p for p in phases if any(check.get("oversold_legs") for check in p["checks"].values())
              or p["checks"]["openride"]["hot_trip_availability_problems"]]
    print(f"report written to {args.out}; oversell check {'FAILED' if failed else 'passed'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
