"""One command record in, its staged table writes and its replies, events or dead letter out.

Free of faust so that tests and the deterministic replay drive it with a plain dict as
the table. For each record, in this order:
1. Decode and validate; a bad record goes to the dead-letter topic (and, if it names a
   reply address and a command id, gets an error reply), and never stops the worker.
2. Handle the command against the trip's state, with the broker-stamped record time,
   and stage what changed in the table (`app.tables.store`).
3. Hand the lifecycle events, then the reply, to `send`. The worker holds them until the
   batch's table writes are in the changelog (`app.worker.batch`), so nothing is
   announced ahead of the state it came from.

Dead-letter codes: `invalid_json` (not a JSON document), `unknown_type` (no or an unknown
`type`), `unsupported_version` (a `v` this processor does not read), `invalid_command`
(missing or invalid fields), `wrong_key` (the record key is not the command's trip),
`internal_error` (a bug met by this record; the worker carries on).
"""

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson
from pydantic import ValidationError

from app.domain.handle import Outcome
from app.domain.policy import Policy
from app.domain.rejections import Code
from app.domain.state import TripState
from app.domain.trip import trip_key
from app.wire import deadletters
from app.wire.topics import REPLAYED, REPLY_PARTITION, REPLY_TO, Topics
from app.wire.commands import TRIP_RECORD, claimed_command_id, parse_command
from app.wire.outbound import lifecycle_events, reply
from app.tables.staged import Staged
from app.tables.store import TripStore

log = logging.getLogger(__name__)

# (topic, key, value, partition or None, headers)
Send = Callable[[str, bytes, bytes, int | None, Mapping[str, bytes]], None]


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Handled:
    """A command's effect on its trip, for what watches the trips (the hold-due index)."""

    key: bytes
    state: TripState
    outcome: Outcome
    command_type: str
    next_visit: int | None  # when the trip next needs a tick's visit (`TripStore.handle`)


def process_command(record: Record, table: Staged, store: TripStore, send: Send, policy: Policy,
                    topics: Topics) -> Handled | None:
    """None when the record went to the dead-letter topic."""
    try:
        wire = parse_command(record.value or b"")
    except ValidationError as error:
        return dead_letter(record, send, rejection_code(error), describe(error), topics)
    if record.key is None or wire.key().encode() != record.key:
        return dead_letter(record, send, "wrong_key", f"expected key {wire.key()!r}", topics)
    command = wire.to_domain()
    state, outcome, next_visit = store.handle(table, record.key, command, record.timestamp_ms, record.offset, policy,
                                              wire.fingerprint)
    for topic, key, value in lifecycle_events(state, outcome):
        send(topics.named(topic), key.encode(), value, None, {})
    send_reply(record, send, wire.command_id, reply(state, outcome, command),
               replayed=outcome.duplicate and outcome.code is not Code.IDEMPOTENCY_KEY_REUSED)
    return Handled(record.key, state, outcome, wire.type, next_visit)


def forward_trip(record: Record, send: Send, topics: Topics) -> None:
    """The trips catalog becomes `publish_trip` commands in the command log, so that one
    log orders everything a trip's state depends on (and a replay needs nothing else)."""
    try:
        trip = TRIP_RECORD.validate_json(record.value or b"")
    except ValidationError as error:
        return dead_letter(record, send, "invalid_trip", describe(error), topics)
    command_id = "trip:" + hashlib.sha256(record.value or b"").hexdigest()[:32]
    command = trip.to_command(command_id)
    key = trip_key(trip.route_id, trip.travel_date).encode()
    send(topics.commands, key, orjson.dumps(command), None, reply_headers(record))


def reply_headers(record: Record) -> dict[str, bytes]:
    return {name: record.headers[name] for name in (REPLY_TO, REPLY_PARTITION) if name in record.headers}


def send_reply(record: Record, send: Send, command_id: str, body: bytes, replayed: bool = False) -> None:
    """The reply, to where the command's headers say. A replay says so in a header, not in
    the body: a retry's reply is byte-identical to the first."""
    if REPLY_TO not in record.headers:
        return
    try:
        partition = int(record.headers[REPLY_PARTITION])
    except (KeyError, ValueError):
        partition = None
    send(record.headers[REPLY_TO].decode(), command_id.encode(), body, partition,
         {REPLAYED: b"true"} if replayed else {})


def dead_letter(record: Record, send: Send, code: str, reason: str, topics: Topics) -> None:
    log.warning("dead letter from %s[%d]@%d: %s: %s", record.topic, record.partition, record.offset, code, reason)
    why = deadletters.headers(code, reason, record.topic, record.partition, record.offset)
    headers = {**record.headers, **dict(why)}
    send(topics.dead_letters, record.key or b"", record.value or b"", None, headers)
    command_id = claimed_command_id(record.value)
    if command_id:
        send_reply(record, send, command_id, orjson.dumps({
            "v": 1, "commandId": command_id, "ok": False, "code": code, "message": reason[:500]}))


def rejection_code(error: ValidationError) -> str:
    first = error.errors()[0]
    if first["type"] in ("json_invalid", "dict_type"):
        return "invalid_json"
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return "unknown_type"
    if any(e["loc"][1:2] == ("v",) for e in error.errors()):
        return "unsupported_version"
    return "invalid_command"


def describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:10])
