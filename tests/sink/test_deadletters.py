"""The dead letters of the worker and of the sink carry the same headers (app.wire.deadletters),
so that one tool and one dashboard read both. Pure: no Kafka, no Postgres."""

from confluent_kafka import Message

from app.wire import deadletters
from app.wire.topics import CONTRACT
from app.worker.processor import Record, dead_letter
from sinks.deadletters import DeadLetter


def worker_headers(reason: str) -> list[tuple[str, bytes]]:
    sent = []
    record = Record("booking.commands", 3, 42, 0, b"key", b"not json", {"trace-id": b"t-1"})
    dead_letter(record, lambda *output: sent.append(output), "invalid_json", reason, CONTRACT)
    [(_, _, _, _, headers)] = sent  # not a command: no error reply
    return list(headers.items())


def sink_headers(reason: str, too_large: bool = False) -> list[tuple[str, bytes]]:
    message = Message(topic="booking.commands", partition=3, offset=42, key=b"key", value=b"not json",
                      headers=[("trace-id", b"t-1")])
    return DeadLetter(message, reason, "invalid_json", too_large).headers()


def test_the_worker_and_the_sink_write_the_same_headers_in_the_same_order() -> None:
    assert worker_headers("not JSON") == sink_headers("not JSON") == [
        ("trace-id", b"t-1"), ("dlq-code", b"invalid_json"), ("dlq-reason", b"not JSON"),
        ("dlq-topic", b"booking.commands"), ("dlq-partition", b"3"), ("dlq-offset", b"42")]


def test_a_long_reason_is_cut_alike() -> None:
    long = "x" * (deadletters.REASON_MAX_BYTES + 100)
    assert worker_headers(long) == sink_headers(long)
    assert dict(sink_headers(long))[deadletters.REASON] == b"x" * deadletters.REASON_MAX_BYTES


def test_a_dead_letter_sent_without_its_value_says_so_last() -> None:
    assert sink_headers("big", too_large=True)[-1] == (deadletters.VALUE_DROPPED, deadletters.VALUE_DROPPED_NOTE)
    assert [name for name, _ in sink_headers("big", too_large=True)[1:]] == list(deadletters.NAMES)
