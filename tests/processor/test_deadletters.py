"""`python -m tools.deadletters` against a real broker and worker: a command the worker
dead-lettered is listed with its code, reason and origin; replayed as it was it is
refused (the worker would refuse it again); replayed with a fixed value it is handled;
replayed again it is skipped, and forced, it is a duplicate that changes nothing."""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from app.config import ROOT
from tests.processor.commands import create_booking, on_trip, publish_trip, trip_key
from tests.processor.namespace import Namespace, worker_namespace
from tests.processor.reading import replies_by_command
from tests.processor.sending import answers
from tests.support.kafka import produce_raw
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Namespace]:
    with worker_namespace(tmp_path_factory.mktemp("deadletters")) as namespace:
        yield namespace


def tool(ns: Namespace, *args: str) -> subprocess.CompletedProcess:
    """The operator's command, in the namespace's topics."""
    return subprocess.run([sys.executable, "-m", "tools.deadletters", *args], cwd=ROOT, env={**os.environ, **ns.env},
                          capture_output=True, text=True, timeout=120)


def listed(ns: Namespace) -> list[dict[str, Any]]:
    done = tool(ns, "list", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_dead_letter_is_listed_refused_as_is_then_replayed_fixed_once(ns: Namespace) -> None:
    route = "D" + uuid.uuid4().hex[:8]
    assert answers(ns, publish_trip(route, capacity=4))[0]["ok"]
    booking = create_booking(route, "rider-d", seats=2)
    broken = {key: value for key, value in booking.items() if key != "seatsBooked"}
    produce_raw(ns.topics.commands, trip_key(route), orjson.dumps(broken), {"trace-id": b"t-1"})

    def ours() -> list[dict[str, Any]]:
        return [letter for letter in listed(ns) if letter["key"] == trip_key(route).decode()]
    [letter] = wait_for("the dead letter listed", ours, timeout_s=60)
    assert letter["code"] == "invalid_command" and "seatsBooked" in letter["reason"]
    assert letter["origin"].startswith(ns.topics.commands + "[") and letter["replayed"] is None
    place = letter["deadLetter"]

    as_is = tool(ns, "replay", place)
    assert as_is.returncode == 2 and "would refuse this command again" in as_is.stderr
    other_id = tool(ns, "replay", place, "--value", json.dumps({**booking, "commandId": "another"}))
    assert other_id.returncode == 2 and "must keep commandId" in other_id.stderr

    fixed = tool(ns, "replay", place, "--value", json.dumps(booking), "--wait", "60")
    assert fixed.returncode == 0, fixed.stderr
    assert "re-submitted" in fixed.stdout and "the worker answered ok" in fixed.stdout, fixed.stdout
    [replayed] = [letter for letter in ours() if letter["deadLetter"] == place]
    assert replayed["replayed"]["fixed"] is True

    again = tool(ns, "replay", place, "--value", json.dumps(booking))
    assert again.returncode == 0 and "skipped, replayed already" in again.stdout
    forced = tool(ns, "replay", place, "--value", json.dumps(booking), "--force", "--wait", "60")
    assert forced.returncode == 0 and "the worker answered ok" in forced.stdout, forced.stdout
    # The forced one is a duplicate: the same reply as the first, and still two seats held.
    replies = replies_by_command(ns)[booking["commandId"]]
    assert len(replies) == 2 and len(set(replies)) == 1 and orjson.loads(replies[0])["ok"]
    [availability] = [reply["availability"] for reply in answers(ns, on_trip("query_availability", route))]
    assert max(leg["held"] + leg["sold"] for leg in availability) == 2, availability
