"""A short chaos run inside `make test`: a thousand commands while the worker is SIGKILLed
five times and restarted (under its static member id, so it takes its partitions straight
back), the sink and the gateway with it, and the clients retry; then the invariant
checker. `make chaos` runs the long version (100,000 commands, 30 kills)."""

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
