"""Dead letters an operator can act on: list them, and re-submit chosen ones to the topic
they came from, as they were or with a fixed value.

    python -m tools.deadletters list [--code CODE] [--origin TOPIC] [--json]
    python -m tools.deadletters replay P:O [P:O ...] [--value JSON | --value-file FILE] [--force]

A dead letter is named by its place in booking.deadletter, `partition:offset` (the first
column of `list`). Each one shows the code and reason it was refused with (the headers
`dlq-code` and `dlq-reason`, set by the worker and the sink) and where it came from
(`dlq-topic`, `dlq-partition`, `dlq-offset`).

Replaying the same dead letter twice applies it at most once, for two reasons:
1. every replay is recorded in booking.deadletter.replays (compacted, keyed by the dead
   letter's place), after the broker acknowledged the re-submitted record; a dead letter
   found there is skipped (`--force` re-submits it anyway);
2. what a replay re-submits is idempotent where it lands: a command keeps the command id
   it had (a fixed value must carry the same `commandId` when the original had a readable
   one), and the worker answers a command id it has seen with its first outcome and
   changes nothing (app.domain.handle); a trip record is its own command id; the sink
   merges lifecycle events by event id and version. So a forced replay, or one repeated
   after the tool died between re-submitting and recording, is a duplicate, not a second
   booking.
A command or trip record the worker would refuse again (invalid, or keyed to another
trip) is refused here, with the worker's own reason, and nothing is sent. A replayed
command asks for its reply on booking.replies (the original sender has long gone), and
the tool waits for it (`--wait`) and prints the worker's answer.
"""

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from pydantic import ValidationError

from app.worker.processor import describe
from app.config import Settings, get_settings
from app.domain.trip import trip_key
from app.wire import deadletters
from app.wire.topics import REPLY_PARTITION, REPLY_TO, Topics
from app.wire.commands import TRIP_RECORD, claimed_command_id, parse_command
from app.transport.bus import choose_reply_partition
from app.transport.clients import command_producer_config, consumer_config, reply_consumer_config

# The client that sent the original has long gone: a replayed command's reply comes to
# this tool instead (Replies).
DROPPED_HEADERS = (*deadletters.NAMES, REPLY_TO, REPLY_PARTITION)


class Refused(Exception):
    """This replay would not do what is asked; nothing was sent."""


@dataclass(frozen=True)
class Resubmission:
    topic: str
    key: bytes | None
    value: bytes
    command_id: str | None = None  # a command's, whose reply is awaited


@dataclass(frozen=True)
class DeadLetter:
    place: str  # "partition:offset" in the dead-letter topic
    at: datetime
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def header(self, name: str, default: str = "-") -> str:
        return self.headers[name].decode(errors="replace") if name in self.headers else default

    @property
    def code(self) -> str:
        return self.header(deadletters.CODE)

    @property
    def origin(self) -> str:
        """Where the record was refused: topic[partition]@offset."""
        return (f"{self.header(deadletters.TOPIC)}[{self.header(deadletters.PARTITION)}]"
                f"@{self.header(deadletters.OFFSET)}")

    def summary(self, replay: dict[str, Any] | None) -> dict[str, Any]:
        return {"deadLetter": self.place, "at": self.at.isoformat(), "code": self.code,
                "reason": self.header(deadletters.REASON, ""), "origin": self.origin,
                "key": self.key.decode(errors="replace") if self.key is not None else None, "replayed": replay}


def consumer(settings: Settings) -> Consumer:
    return Consumer(consumer_config(settings.kafka_bootstrap, "openride-deadletters", {"enable.partition.eof": True}))


def read_all(settings: Settings, topic: str) -> Iterator[Message]:
    """Every record of the topic as it ends now, partition by partition."""
    reader = consumer(settings)
    try:
        partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
        wanted = {p: high for p, (low, high) in ends.items() if high > low}
        reader.assign([TopicPartition(topic, p, ends[p][0]) for p in wanted])
        while wanted:
            for message in reader.consume(500, 5.0) or []:
                if message.error() is None:
                    yield message
                if message.offset() is not None and message.offset() + 1 >= wanted.get(message.partition(), 0):
                    wanted.pop(message.partition(), None)
    finally:
        reader.close()


def read_one(settings: Settings, topic: str, partition: int, offset: int) -> Message | None:
    reader = consumer(settings)
    try:
        reader.assign([TopicPartition(topic, partition, offset)])
        for _ in range(20):
            for message in reader.consume(1, 1.0):
                if message.error() is None and message.offset() == offset:
                    return message
                return None  # end of the partition, or compacted away
        return None
    finally:
        reader.close()


def dead_letter_of(message: Message) -> DeadLetter:
    return DeadLetter(f"{message.partition()}:{message.offset()}",
                      datetime.fromtimestamp(message.timestamp()[1] / 1000, UTC),
                      message.key(), message.value(), dict(message.headers() or []))


def replays(settings: Settings) -> dict[str, dict[str, Any]]:
    """The ledger: dead letter's place -> what its last replay re-submitted."""
    return {message.key().decode(): orjson.loads(message.value()) for message in read_all(settings, Topics.of(settings).dead_letter_replays)
            if message.key() is not None and message.value()}


def list_dead_letters(settings: Settings, code: str | None, origin: str | None) -> list[dict[str, Any]]:
    ledger = replays(settings)
    letters = (dead_letter_of(m) for m in read_all(settings, Topics.of(settings).dead_letters))
    return [letter.summary(ledger.get(letter.place)) for letter in letters
            if (code is None or letter.code == code) and (origin is None or letter.header(deadletters.TOPIC) == origin)]


def to_resubmit(letter: DeadLetter, fixed: bytes | None, topics: Topics) -> Resubmission:
    """What to re-submit, and where; raises Refused when the worker would refuse it."""
    topic = letter.header(deadletters.TOPIC, "")
    if not topic:
        raise Refused(f"dead letter {letter.place} does not say where it came from (no dlq-topic header)")
    value = letter.value if fixed is None else fixed
    if value is None:
        raise Refused(f"dead letter {letter.place} has no value (too large to copy): give a fixed one")
    if topic == topics.commands:
        return command(letter, value, topics.commands)
    if topic == topics.trips:
        try:
            trip = TRIP_RECORD.validate_json(value)
        except ValidationError as error:
            raise Refused(f"the worker would refuse this trip again: invalid_trip: {describe(error)}") from None
        return Resubmission(topic, trip_key(trip.route_id, trip.travel_date).encode(), value)
    return Resubmission(topic, letter.key, value)


def command(letter: DeadLetter, value: bytes, commands_topic: str) -> Resubmission:
    """Keyed by the command's trip, as the command topic is; the command id must be the
    original's, so that the worker tells a second replay by it."""
    try:
        wire = parse_command(value)
    except ValidationError as error:
        raise Refused(f"the worker would refuse this command again: {describe(error)}") from None
    original = claimed_command_id(letter.value)
    if original is not None and wire.command_id != original:
        raise Refused(f"the fixed command must keep commandId {original!r} (it has {wire.command_id!r}): "
                      "the worker tells replays of the same command by it")
    return Resubmission(commands_topic, wire.key().encode(), value, wire.command_id)


def replay(settings: Settings, places: list[str], fixed: bytes | None, force: bool,
           wait_s: float) -> Iterator[str]:
    """Re-submits each dead letter in turn, saying what happened to it."""
    ledger = replays(settings)
    topics = Topics.of(settings)
    producer = Producer({**command_producer_config(settings), "client.id": "openride-deadletters"})
    for place in places:
        if place in ledger and not force:
            yield (f"{place}: skipped, replayed already ({ledger[place]['replayedAt']} to "
                   f"{ledger[place]['topic']}[{ledger[place]['partition']}]@{ledger[place]['offset']}; "
                   "--force to re-submit)")
            continue
        partition, offset = (int(part) for part in place.split(":"))
        message = read_one(settings, topics.dead_letters, partition, offset)
        if message is None:
            raise Refused(f"no dead letter at {place}")
        letter = dead_letter_of(message)
        resubmission = to_resubmit(letter, fixed, topics)
        headers = [(name, header) for name, header in letter.headers.items() if name not in DROPPED_HEADERS]
        headers.append((deadletters.REPLAY_OF, place.encode()))
        replies = Replies(settings, resubmission.command_id) if resubmission.command_id else None
        try:
            sent = deliver(producer, resubmission.topic, resubmission.key, resubmission.value,
                           headers + (replies.headers() if replies else []))
            record = {"replayedAt": datetime.now(UTC).isoformat(), "topic": resubmission.topic,
                      "partition": sent.partition(), "offset": sent.offset(), "fixed": fixed is not None}
            deliver(producer, topics.dead_letter_replays, place.encode(), orjson.dumps(record), [])
            ledger[place] = record
            yield (f"{place}: re-submitted to {resubmission.topic}[{sent.partition()}]@{sent.offset()}"
                   + (" with the fixed value" if fixed is not None else ""))
            if replies is not None:
                yield f"{place}: {replies.answer(wait_s)}"
        finally:
            if replies is not None:
                replies.close()


class Replies:
    """The replies partition a replayed command names, read from its end before the
    command is sent, so its reply cannot be missed."""

    def __init__(self, settings: Settings, command_id: str) -> None:
        self.command_id = command_id
        self.partition = choose_reply_partition(settings.reply_partitions, command_id)
        self.topic = Topics.of(settings).replies
        self.reader = Consumer(reply_consumer_config(settings))
        where = TopicPartition(self.topic, self.partition)
        _, end = self.reader.get_watermark_offsets(where, timeout=10)
        self.reader.assign([TopicPartition(self.topic, self.partition, end)])

    def headers(self) -> list[tuple[str, bytes]]:
        return [(REPLY_TO, self.topic.encode()), (REPLY_PARTITION, str(self.partition).encode())]

    def answer(self, wait_s: float) -> str:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for message in self.reader.consume(100, 0.5):
                if message.error() is None and message.key() == self.command_id.encode():
                    body = orjson.loads(message.value())
                    return "the worker answered ok" if body.get("ok") else \
                        f"the worker answered {body.get('code')}: {body.get('message', '')}"
        return (f"no answer within {wait_s:.0f} s (the worker may be down or behind: it will handle the command "
                "when it gets to it)")

    def close(self) -> None:
        self.reader.close()


def deliver(producer: Producer, topic: str, key: bytes | None, value: bytes, headers: list) -> Message:
    """Produces and waits for the broker's acknowledgement."""
    outcome: list[Any] = []
    producer.produce(topic, key=key, value=value, headers=headers,
                     on_delivery=lambda error, message: outcome.append(error or message))
    producer.flush(60)
    if not outcome or not isinstance(outcome[0], Message):
        raise RuntimeError(f"not delivered to {topic}: {outcome[0] if outcome else 'no answer within 60 s'}")
    return outcome[0]


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(prog="python -m tools.deadletters", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = result.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="dead letters, oldest first per partition")
    listing.add_argument("--code", help="only this dlq-code (e.g. invalid_command)")
    listing.add_argument("--origin", help="only those refused on this topic (e.g. booking.commands)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    replaying = commands.add_parser("replay", help="re-submit dead letters to the topic they came from")
    replaying.add_argument("places", nargs="+", metavar="P:O", help="dead letters, as `list` names them")
    fixed = replaying.add_mutually_exclusive_group()
    fixed.add_argument("--value", help="the fixed value to send instead (JSON)")
    fixed.add_argument("--value-file", type=Path, help="the same, read from a file")
    replaying.add_argument("--force", action="store_true", help="re-submit even if replayed before")
    replaying.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a replayed command's reply")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = get_settings()
    if args.command == "list":
        for letter in list_dead_letters(settings, args.code, args.origin):
            if args.json:
                print(json.dumps(letter))
            else:
                replayed = "replayed" if letter["replayed"] else "-"
                print(f"{letter['deadLetter']}\t{letter['at']}\t{letter['code']}\t{letter['origin']}\t{replayed}\t"
                      f"{letter['reason']}")
        return 0
    fixed = args.value.encode() if args.value else args.value_file.read_bytes() if args.value_file else None
    if fixed is not None and len(args.places) > 1:
        parser().error("a fixed value replaces one dead letter: name one P:O")
    try:
        for line in replay(settings, args.places, fixed, args.force, args.wait):
            print(line)
    except Refused as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
