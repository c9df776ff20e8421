"""The benchmark's report: docs/benchmarks/README.md (tables, machine, command) and PNG
plots (latency against offered load; answers per second over time), from the phases of
bench/run.py (one per run and added round-trip time)."""

import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

LABELS = {"direct": "OpenRide, direct Kafka commands", "http": "OpenRide, HTTP via gateway",
          "baseline": "BASELINE bare: FastAPI + Postgres row lock",
          "baseline-lfl": "BASELINE like-for-like: + JWT, idempotency record, audit line"}
SHORT = {"direct": "direct", "http": "OpenRide HTTP", "baseline": "baseline bare",
         "baseline-lfl": "baseline like-for-like"}
SCENARIOS = ("hot", "spread")
REFERENCE_RATE = 1000  # the step whose latency the targets name


def sustainable(steps: list[dict[str, Any]], scenario: str, target: str) -> float:
    """The highest throughput reached in a sustained step (0 when none was)."""
    return max((s["throughput"] for s in steps if s["scenario"] == scenario and s["target"] == target
                and s["sustained"]), default=0.0)


def top_step(steps: list[dict[str, Any]], scenario: str, target: str) -> dict[str, Any] | None:
    """The highest sustained step (where CPU per request is read)."""
    sustained = [s for s in steps if s["scenario"] == scenario and s["target"] == target and s["sustained"]]
    return max(sustained, key=lambda s: s["throughput"], default=None)


def step_at(steps: list[dict[str, Any]], scenario: str, target: str, rate: float) -> dict[str, Any] | None:
    return next((s for s in steps if s["scenario"] == scenario and s["target"] == target and s["rate"] == rate), None)


def cpu_ms_per_request(step: dict[str, Any]) -> dict[str, float]:
    """CPU time per answered request, per process (ms)."""
    answered = max(step["ok"] + step["rejected"], 1)
    seconds = step["ended"] - step["started"]
    return {name: percent / 100 * seconds * 1000 / answered for name, percent in step["cpu"].items()}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Phases:
    """The phases' steps, by RTT and run."""

    def __init__(self, results: dict[str, Any]):
        self.results = results
        self.rtts: list[float] = results["rtts"]
        self.targets: list[str] = results["targets"]
        self.by_rtt: dict[float, list[dict[str, Any]]] = defaultdict(list)
        for phase in results["phases"]:
            self.by_rtt[phase["rtt_ms"]].append(phase)

    def sustained(self, rtt: float, scenario: str, target: str) -> list[float]:
        return [sustainable(p["steps"], scenario, target) for p in self.by_rtt[rtt]]

    def ratios(self, rtt: float, scenario: str, over: str, under: str) -> list[float]:
        """Per run, then their median is quoted: ratios are taken within a run."""
        return [sustainable(p["steps"], scenario, over) / base for p in self.by_rtt[rtt]
                if (base := sustainable(p["steps"], scenario, under))]


def summary_lines(phases: Phases) -> list[str]:
    targets = [t for t in phases.targets if t != "direct"] + (["direct"] if "direct" in phases.targets else [])
    header = "| scenario | added RTT | " + " | ".join(SHORT[t] for t in targets) + \
        " | HTTP / like-for-like | HTTP / bare |"
    lines = [header, "|---|---:|" + "---:|" * (len(targets) + 2)]
    for scenario in SCENARIOS:
        for rtt in phases.rtts:
            cells = []
            for target in targets:
                runs = phases.sustained(rtt, scenario, target)
                cells.append(f"**{median(runs):,.0f}** ({', '.join(f'{r:,.0f}' for r in runs)})")
            ratio = (lambda under: f"{median(r):.2f}x" if (r := phases.ratios(rtt, scenario, "http", under)) else "n/a")
            lines.append(f"| {scenario} | {rtt:g} ms | " + " | ".join(cells) +
                         f" | {ratio('baseline-lfl')} | {ratio('baseline')} |")
    return lines


def latency_lines(phases: Phases) -> list[str]:
    lines = ["| scenario | added RTT | system | p50 ms | p99 ms (runs) |", "|---|---:|---|---:|---|"]
    for scenario in SCENARIOS:
        for rtt in phases.rtts:
            for target in phases.targets:
                found = [s for p in phases.by_rtt[rtt] if (s := step_at(p["steps"], scenario, target, REFERENCE_RATE))]
                if not found:
                    continue
                p99s = [s["p99_ms"] for s in found]
                lines.append(f"| {scenario} | {rtt:g} ms | {SHORT[target]} | {median([s['p50_ms'] for s in found]):.1f}"
                             f" | **{median(p99s):.1f}** ({', '.join(f'{v:.1f}' for v in p99s)}) |")
    return lines


def cpu_lines(phases: Phases) -> list[str]:
    """CPU per answered request at each series' highest sustained step, median over runs."""
    names = ["gateway", "worker", "sink", "baseline", "baseline-lfl", "kafka", "postgres", "delayproxy", "generator"]
    lines = ["| scenario | added RTT | system | at /s | " + " | ".join(names) + " | total, system's own |",
             "|---|---:|---|---:|" + "---:|" * (len(names) + 1)]
    own = {"http": ("gateway", "worker", "sink", "kafka", "postgres"),
           "direct": ("worker", "sink", "kafka", "postgres"),
           "baseline": ("baseline", "postgres"), "baseline-lfl": ("baseline-lfl", "postgres")}
    for scenario in SCENARIOS:
        for rtt in phases.rtts:
            for target in phases.targets:
                tops = [s for p in phases.by_rtt[rtt] if (s := top_step(p["steps"], scenario, target))]
                if not tops:
                    continue
                per = [cpu_ms_per_request(s) for s in tops]
                cell = {name: median([p.get(name, 0.0) for p in per]) for name in names}
                total = median([sum(p.get(name, 0.0) for name in own[target]) for p in per])
                rate = median([s["throughput"] for s in tops])
                lines.append(f"| {scenario} | {rtt:g} ms | {SHORT[target]} | {rate:,.0f} | " +
                             " | ".join(f"{cell[n]:.3f}" if cell[n] >= 0.0005 else "" for n in names) +
                             f" | **{total:.3f}** |")
    return lines


def generator_lines(phases: Phases) -> list[str]:
    per_request = []
    for phase in phases.results["phases"]:
        for step in phase["steps"]:
            if step["target"] != "direct" and step["sustained"]:
                per_request.append(cpu_ms_per_request(step).get("generator", 0.0) * 1000)
    if not per_request:
        return []
    return [f"The load generator's own CPU per answered request over the sustained HTTP steps: median "
            f"{median(per_request):.0f} µs, at most {max(per_request):.0f} µs (its process also samples the sink's "
            "lag and runs the direct Kafka client it publishes trips with; nothing is subtracted)."]


def step_lines(results: dict[str, Any]) -> list[str]:
    lines = ["| run | RTT | scenario | system | offered/s | answered/s | ok | rejected | errors | p50 ms | p99 ms"
             " | p99.9 ms | sustained | CPU % of a core (≥ 5) | load |",
             "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for phase in results["phases"]:
        for s in phase["steps"]:
            lines.append(
                f"| {phase['run']} | {phase['rtt_ms']:g} | {s['scenario']} | {s['target']} | {s['rate']:,.0f} |"
                f" {s['throughput']:,.0f} | {s['ok']} | {s['rejected']} | {s['errors']} | {s['p50_ms']:.1f} |"
                f" {s['p99_ms']:.1f} | {s['p999_ms']:.1f} | {'yes' if s['sustained'] else 'no'} |"
                f" {cpu_cell(s['cpu'])} | {s['load_avg']:.1f} |")
    return lines


def check_lines(results: dict[str, Any]) -> list[str]:
    lines = ["| run | RTT | measured added RTT (Postgres SELECT 1, median) | OpenRide oversold legs | sink caught up"
             " | hot-trip availability problems | baselines' oversold legs | sink lag p95 / max s |",
             "|---:|---:|---:|---:|---|---:|---|---|"]
    for phase in results["phases"]:
        checks = phase["checks"]
        openride = checks["openride"]
        baselines = ", ".join(f"{name} {check['oversold_legs']}" for name, check in checks.items()
                              if name != "openride")
        lag = "; ".join(f"{series} {v['p95']:.2f} / {v['max']:.2f}" for series, v in phase["sink_lag_s"].items())
        lines.append(f"| {phase['run']} | {phase['rtt_ms']:g} | {phase['added_rtt_ms']:.2f} ms |"
                     f" {openride['oversold_legs']} | {openride['sink_caught_up']} |"
                     f" {openride['hot_trip_availability_problems']} | {baselines} | {lag} |")
    return lines


def cpu_cell(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}" for name, value in cpu.items() if value >= 5)


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    phases = Phases(results)
    lines = [
        "# Benchmark: OpenRide against row-lock baselines",
        "",
        "Written by `make bench` (bench/run.py) on the machine below, with whatever else was",
        "running on it (see the load average). Each figure is the median of the runs, with the",
        "runs' own in brackets; a ratio is taken within each run, then the median of those.",
        "",
        f"- command: `{info['command']}`",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Python {info['python']},"
        f" Linux {info['kernel']}, commit {info['commit']}",
        f"- load average (1/5/15 min) before: {', '.join(f'{x:.2f}' for x in info['load_avg_before'])};"
        f" after: {', '.join(f'{x:.2f}' for x in info['load_avg_after'])}; took {info['duration_s']} s,"
        f" {results['runs']} run(s)" + (" (quick mode)" if results.get("quick") else ""),
        "",
        "Open loop: each request leaves at its intended instant whatever the system answers;",
        "latency runs from that instant to the answer, so queueing shows. The ramp stops at the",
        "first step that is not sustained (answered < 95 %, answers/s < 95 % of offered/s,",
        "errors > 1 % or p99 > 1 s). Work: creates on random journeys (1-4 seats, 10 stops,",
        "50 seats) and cancels of earlier bookings (40 % on the hot trip, 30 % spread), every",
        "request with an Idempotency-Key; rejections (no seats) are answers. Added RTT: every",
        "process of both systems reaches Postgres and Kafka through bench/delayproxy, which",
        "holds each chunk half the RTT each way (the load generator's HTTP is direct).",
        f"Before the first phase's ramps, {info['warmup_s']:.0f} s of unmeasured load shared by the",
        "targets (a fresh broker's JVM spends its first minutes compiling), a third of that later.",
        "",
        "Systems: " + "; ".join(f"**{SHORT[t]}**: {LABELS[t]}" for t in phases.targets) + ".",
        "",
        "## Sustainable throughput (answers/s)",
        "",
        *summary_lines(phases),
        "",
        f"## Latency at {REFERENCE_RATE:,}/s offered",
        "",
        *latency_lines(phases),
        "",
        "## CPU per answered request (ms), per process, at the highest sustained step",
        "",
        "Median over the runs. The total counts the system's own processes (OpenRide: gateway,",
        "worker, sink, Kafka, Postgres; a baseline: itself and Postgres); the delay proxy and the",
        "load generator are the benchmark's. Every process shares the same two cores, so a",
        "process's CPU also rises with what the others take from the caches.",
        "",
        *cpu_lines(phases),
        "",
        *generator_lines(phases),
        "",
        "## Checks",
        "",
        *check_lines(results),
        "",
        "## Plots",
        "",
        "![latency vs load](latency_vs_load.png)",
        "",
        "![throughput vs time](throughput_vs_time.png)",
        "",
        "## Every step",
        "",
        *step_lines(results),
        "",
    ]
    return "\n".join(lines)


def plot_latency(phases: Phases, out: Path) -> None:
    """Per scenario and RTT: p50 and p99 against the offered rate, medians over the runs."""
    figure, axes = plt.subplots(len(phases.rtts), 2, figsize=(12, 4.2 * len(phases.rtts)), sharey=True,
                                squeeze=False)
    for row, rtt in enumerate(phases.rtts):
        for axis, scenario in zip(axes[row], SCENARIOS, strict=True):
            for target in phases.targets:
                by_rate: dict[float, list[dict[str, Any]]] = defaultdict(list)
                for phase in phases.by_rtt[rtt]:
                    for step in phase["steps"]:
                        if step["scenario"] == scenario and step["target"] == target:
                            by_rate[step["rate"]].append(step)
                rates = sorted(by_rate)
                if not rates:
                    continue
                line, = axis.plot(rates, [median([s["p50_ms"] for s in by_rate[r]]) for r in rates], marker="o",
                                  label=f"{SHORT[target]} p50")
                axis.plot(rates, [median([s["p99_ms"] for s in by_rate[r]]) for r in rates], marker="x",
                          linestyle="--", color=line.get_color(), label=f"{SHORT[target]} p99")
            axis.set_title(f"{'hot trip' if scenario == 'hot' else 'spread over 1,000 trips'}, +{rtt:g} ms RTT")
            axis.set_xlabel("offered load (requests/s)")
            axis.set_yscale("log")
            axis.grid(True, which="both", alpha=0.3)
        axes[row][0].set_ylabel("latency from intended send (ms)")
    axes[0][1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "latency_vs_load.png", dpi=110)
    plt.close(figure)


def plot_throughput(results: dict[str, Any], out: Path) -> None:
    """Answers per second over time, in the first run's phases."""
    first = [p for p in results["phases"] if p["run"] == 1]
    figure, axes = plt.subplots(len(first), 1, figsize=(12, 3.6 * len(first)), squeeze=False)
    for axis, phase in zip(axes[:, 0], first, strict=True):
        timeline = phase["timeline"]
        if not timeline:
            continue
        origin = min(t for _, t in timeline)
        per_second: dict[str, Counter] = defaultdict(Counter)
        for series, t in timeline:
            per_second[series][int(t - origin)] += 1
        for series, counts in per_second.items():
            seconds = sorted(counts)
            axis.plot(seconds, [counts[s] for s in seconds], label=series, linewidth=1)
        axis.set_title(f"run 1, +{phase['rtt_ms']:g} ms RTT")
        axis.set_xlabel("seconds since the first request")
        axis.set_ylabel("answers per second")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "throughput_vs_time.png", dpi=110)
    plt.close(figure)


def write_report(results: dict[str, Any], out: Path) -> None:
    plot_latency(Phases(results), out)
    plot_throughput(results, out)
    (out / "README.md").write_text(markdown(results))
