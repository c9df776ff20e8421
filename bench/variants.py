"""What the benchmarks compare side by side in one run: variants of the worker, each a
name, the code it runs (this working tree, or any git commit of the project) and the
environment it runs with.

    NAME[@REF]:VARIABLE=VALUE,...

`REF` is a commit, branch or tag of this repository (`--variant main@40f411a:`): its
files are exported once into .local/trees/<commit>/ (`git archive`) and the worker runs
from there, with this checkout's virtualenv. Without `@REF` the worker runs from this
working tree. The assignments are settings (`commit5s:WORKER_COMMIT_INTERVAL_SECONDS=5`)
or faust's own variables (`linger5:PRODUCER_LINGER=0.005`).
"""

import subprocess
import tarfile
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Variant:
    name: str
    tree: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)


def parse_variant(text: str) -> Variant:
    head, _, assignments = text.partition(":")
    name, _, ref = head.partition("@")
    env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    return Variant(name, tree_of(ref) if ref else ROOT, env)


def tree_of(ref: str) -> Path:
    """The files of commit `ref`, exported once."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{ref}^{{commit}}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    tree = ROOT / ".local" / "trees" / commit
    if not (tree / "app").is_dir():
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
        tree.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(archive)) as files:
            files.extractall(tree, filter="data")
    return tree
