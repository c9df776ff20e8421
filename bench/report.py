"""The benchmark's report: docs/benchmarks/README.md (tables, machine, command) and PNG
plots (latency against offered load; answers per second over time)."""

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

LABELS = {"direct": "OpenRide, direct Kafka commands", "http": "OpenRide, HTTP via gateway",
          "baseline": "BASELINE: FastAPI + Postgres row lock"}


def sustainable(steps: list[dict[str, Any]], scenario: str, target: str) -> float:
    """The highest throughput reached in a sustained step (0 when none was)."""
    return max((s["throughput"] for s in steps if s["scenario"] == scenario and s["target"] == target
                and s["sustained"]), default=0.0)


def plot_latency(steps: list[dict[str, Any]], out: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for axis, scenario in zip(axes, ("hot", "spread"), strict=True):
        for target, label in LABELS.items():
            series = [s for s in steps if s["scenario"] == scenario and s["target"] == target]
            if not series:
                continue
            rates = [s["rate"] for s in series]
            line, = axis.plot(rates, [s["p50_ms"] for s in series], marker="o", label=f"{label} p50")
            axis.plot(rates, [s["p99_ms"] for s in series], marker="x", linestyle="--", color=line.get_color(),
                      label=f"{label} p99")
        axis.set_title(f"{scenario} trip(s)" if scenario == "hot" else "spread over 1,000 trips")
        axis.set_xlabel("offered load (requests/s)")
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency from intended send (ms)")
    axes[1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "latency_vs_load.png", dpi=110)
    plt.close(figure)


def plot_throughput(timeline: list[tuple[str, float]], out: Path) -> None:
    if not timeline:
        return
    origin = min(t for _, t in timeline)
    per_second: dict[str, Counter] = defaultdict(Counter)
    for series, t in timeline:
        per_second[series][int(t - origin)] += 1
    figure, axis = plt.subplots(figsize=(12, 4.5))
    for series, counts in per_second.items():
        seconds = sorted(counts)
        axis.plot(seconds, [counts[s] for s in seconds], label=series, linewidth=1)
    axis.set_xlabel("seconds since the first request")
    axis.set_ylabel("answers per second")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "throughput_vs_time.png", dpi=110)
    plt.close(figure)


def cpu_cell(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}" for name, value in cpu.items() if value >= 5)


def markdown(results: dict[str, Any]) -> str:
    steps, info, checks = results["steps"], results["machine"], results["checks"]
    lines = [
        "# Benchmark: OpenRide against a row-lock baseline",
        "",
        "Written by `make bench` (bench/run.py); numbers from one run, on the machine below,",
        "with whatever else was running on it (see the load average). Rerun it on a quiet machine",
        "before quoting a figure.",
        "",
        f"- command: `{info['command']}`",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Python {info['python']},"
        f" Linux {info['kernel']}, commit {info['commit']}",
        f"- load average (1/5/15 min) before: {', '.join(f'{x:.2f}' for x in info['load_avg_before'])};"
        f" after: {', '.join(f'{x:.2f}' for x in info['load_avg_after'])}; run took {info['duration_s']} s"
        + (" (quick mode)" if results.get("quick") else ""),
        "",
        "Open loop: each request leaves at its intended instant whatever the system answers;",
        "latency runs from that instant to the answer, so queueing shows. The ramp stops at the",
        "first step that is not sustained (answered < 95 %, answers/s < 95 % of offered/s,",
        "errors > 1 % or p99 > 1 s). Work:",
        "creates on random journeys (1-4 seats, 10 stops, 50 seats) and cancels of earlier",
        "bookings (40 % on the hot trip, 30 % spread). Rejections (no seats) are answers.",
        f"Cancels go the path under test (HTTP: the gateway's cancel route). Before the ramps, {info['warmup_s']:.0f} s of unmeasured load",
        "shared by the targets (a fresh broker's JVM spends its first minutes compiling).",
        "",
        "## Sustainable throughput (answers/s)",
        "",
        "| scenario | OpenRide direct | OpenRide HTTP | baseline | direct / baseline | HTTP / baseline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for scenario in ("hot", "spread"):
        direct, http, base = (sustainable(steps, scenario, t) for t in ("direct", "http", "baseline"))
        ratio = (lambda x: f"{x / base:.1f}x" if base else "n/a")
        lines.append(f"| {scenario} | {direct:,.0f} | {http:,.0f} | {base:,.0f} | {ratio(direct)} | {ratio(http)} |")
    lines += [
        "",
        "## Every step",
        "",
        "| scenario | system | offered/s | answered/s | ok | rejected | errors | p50 ms | p95 ms | p99 ms | p99.9 ms"
        " | sustained | CPU % of a core (≥ 5) | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for s in steps:
        lines.append(
            f"| {s['scenario']} | {s['target']} | {s['rate']:,.0f} | {s['throughput']:,.0f} | {s['ok']} |"
            f" {s['rejected']} | {s['errors']} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['p99_ms']:.1f} |"
            f" {s['p999_ms']:.1f} | {'yes' if s['sustained'] else 'no'} | {cpu_cell(s['cpu'])} | {s['load_avg']:.1f} |")
    lines += ["", "## Sink lag (seconds until Postgres held what the lifecycle topics held)", "",
              "| series | p95 | max |", "|---|---:|---:|"]
    for series, lag in results["sink_lag_s"].items():
        lines.append(f"| {series} | {lag['p95']:.2f} | {lag['max']:.2f} |")
    openride, baseline = checks["openride"], checks["baseline"]
    lines += [
        "", "## Oversell check on the final state", "",
        "| system | bookings holding seats | oversold legs | other |", "|---|---:|---:|---|",
        f"| OpenRide (Postgres read model) | {openride['bookings_holding_seats']} | {openride['oversold_legs']} |"
        f" sink caught up: {openride['sink_caught_up']}; hot-trip availability legs breaking invariants 1-2:"
        f" {openride['hot_trip_availability_problems']} |",
        f"| baseline | {baseline['bookings_holding_seats']} | {baseline['oversold_legs']} | |",
        "", "## Plots", "", "![latency vs load](latency_vs_load.png)", "",
        "![throughput vs time](throughput_vs_time.png)", "",
    ]
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: Path) -> None:
    plot_latency(results["steps"], out)
    plot_throughput(results["timeline"], out)
    (out / "README.md").write_text(markdown(results))
