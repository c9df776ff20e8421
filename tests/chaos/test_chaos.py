"""A short chaos run inside `make test`: two thousand commands while the worker is
SIGKILLed five times (the sink and the gateway with it every other time) and restarted
under its static member id while the clients retry, then the invariant checker. The
full run is `make chaos`."""

import pytest

from bench import chaos

pytestmark = pytest.mark.integration


def test_invariants_hold_after_workers_sink_and_gateway_are_killed() -> None:
    args = chaos.parser().parse_args(
        ["--commands", "2000", "--kill-every", "4", "--min-kills", "5", "--sink-every", "2", "--gateway-every", "2",
         "--trips", "5",
         "--kafka-clients", "24", "--http-clients", "8"])
    counts = chaos.run(args)
    assert counts == dict.fromkeys(counts, 0), counts
