"""The headers of a dead letter: a contract between those who write dead letters (the
worker, the sink) and those who read them (tools.deadletters, operators, the worker's
metrics).

A dead letter is the refused record itself (its key, its value, its own headers) with
these headers after its own: why it was refused and where it was.
"""

CODE = "dlq-code"  # a stable code, e.g. invalid_command, invalid_event, refused_by_postgres
REASON = "dlq-reason"  # for people: what was wrong
TOPIC = "dlq-topic"  # where the record was refused ...
PARTITION = "dlq-partition"
OFFSET = "dlq-offset"  # ... and at which place, so that it can be read again there
VALUE_DROPPED = "dlq-value-dropped"  # present when the copy went without the record's value
# On a record that tools.deadletters re-submitted: the dead letter's place, "partition:offset".
REPLAY_OF = "dlq-replay-of"

NAMES = (CODE, REASON, TOPIC, PARTITION, OFFSET, VALUE_DROPPED)

# A reason quoting a large value would make the dead letter larger than the record.
REASON_MAX_BYTES = 4000
VALUE_DROPPED_NOTE = b"too large to copy; read it at dlq-topic/partition/offset"


def headers(code: str, reason: str, topic: str, partition: int, offset: int,
            value_dropped: bool = False) -> list[tuple[str, bytes]]:
    """The headers that say why and where a record was refused, in this order."""
    result = [
        (CODE, code.encode()),
        (REASON, reason.encode()[:REASON_MAX_BYTES]),
        (TOPIC, topic.encode()),
        (PARTITION, str(partition).encode()),
        (OFFSET, str(offset).encode()),
    ]
    if value_dropped:
        result.append((VALUE_DROPPED, VALUE_DROPPED_NOTE))
    return result
