"""A short chaos run inside `make test`: a thousand commands, then the worker, the sink and
the gateway SIGKILLed together and restarted (the worker under its static member id)
while the clients retry, then the invariant checker. One kill only: with five, one CI run
in three found replies, events and table state differing from the log's truth (an open
bug, see docs/benchmarks/NOTES.md); `make chaos` runs many kills."""

import pytest

from bench import chaos

pytestmark = pytest.mark.integration


def test_invariants_hold_after_workers_sink_and_gateway_are_killed() -> None:
    args = chaos.parser().parse_args(
        ["--commands", "1000", "--kill-every", "4", "--min-kills", "5", "--sink-every", "1", "--gateway-every", "1",
         "--trips", "5",
         "--kafka-clients", "24", "--http-clients", "8"])
    counts = chaos.run(args)
    assert counts == dict.fromkeys(counts, 0), counts
