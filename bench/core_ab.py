"""A/B of the core's hot path between this checkout and another (not a test).

    .venv/bin/python bench/core_ab.py --base /path/to/other/checkout [--rounds 5] [--commands 10000] [--seats 50]

bench/core_bench.py's stream (the same mix and seed) is timed in each checkout, in a
fresh process per checkout and round, alternating (A B A B ...), so both see the same
machine over the same minutes. Time is the process's CPU time (`time.process_time`): on
a machine shared with other work, wall time mostly measures the others; and even CPU time
only ever grows with their interference (caches, the other hyperthread), so a round takes
the fastest of its `--runs` replays. Printed: per round, commands per CPU-second of
`handle` (the whole state in memory) and of `TripStore.handle` with the trip cached (the
agent's path), and this checkout's ratio to the base; then the median ratio over the
rounds.

The other checkout needs only a bench/core_bench.py with `record_stream`, `time_core` and
`time_store` (any since the table store), e.g. `git archive main | tar -x -C /tmp/main`.
"""

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def child(root: str, commands: int, seats: int, runs: int) -> None:
    """In a fresh process: the stream recorded and replayed with `root`'s code."""
    sys.path.insert(0, root)
    from bench import core_bench  # noqa: PLC0415 - from the checkout named, not this one

    capacity = {"seats": seats} if "seats" in inspect.signature(core_bench.record_stream).parameters else {}
    if not capacity and seats != 50:
        raise SystemExit(f"{root}'s core_bench plays 50 seats only")
    # A batched store (issue 14 on) is timed as the agent runs it, written every 100 commands.
    batched = {"batch": 100} if "batch" in inspect.signature(core_bench.time_store).parameters else {}
    stream, seen = core_bench.record_stream(commands, 7, **capacity)
    paths = {"core": lambda: core_bench.time_core(stream),
             "cached": lambda: core_bench.time_store(stream, seen["key"], 1, **batched)}
    timings: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(runs):
        for path, run in paths.items():
            started = time.process_time()
            run()
            timings[path].append(len(stream) / (time.process_time() - started))
    print(json.dumps({path: max(rates) for path, rates in timings.items()}))


def measure(root: Path, args: argparse.Namespace) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", str(root), "--commands", str(args.commands),
                          "--seats", str(args.seats), "--runs", str(args.runs)],
                         check=True, capture_output=True, text=True, cwd=root).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--seats", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3, help="replays per process (the fastest is the round's)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.commands, args.seats, args.runs)
    if args.base is None:
        parser.error("--base is required")
    ratios: dict[str, list[float]] = {"core": [], "cached": []}
    print(f"{args.seats} seats, {args.commands:,} commands, commands per CPU-second (fastest of {args.runs} replays)\n")
    print("| round | base `handle` | this `handle` | ratio | base cached | this cached | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for round_ in range(1, args.rounds + 1):
        base, this = measure(args.base.resolve(), args), measure(HERE, args)
        for path in ratios:
            ratios[path].append(this[path] / base[path])
        print(f"| {round_} | {base['core']:,.0f} | {this['core']:,.0f} | {ratios['core'][-1]:.3f} "
              f"| {base['cached']:,.0f} | {this['cached']:,.0f} | {ratios['cached'][-1]:.3f} |", flush=True)
    print(f"\nmedian ratio, this / base: `handle` {statistics.median(ratios['core']):.3f}, "
          f"`TripStore.handle` cached {statistics.median(ratios['cached']):.3f}")


if __name__ == "__main__":
    main()
