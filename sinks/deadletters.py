"""Records the sink cannot write go to the dead-letter topic: the record as it was, with
the headers of app.wire.deadletters saying why and where.

`DeadLetters.send` returns only once the broker has acknowledged every one of them: the
batch whose offsets pass these records must not commit before they are safe. A dead
letter the broker refuses as too large goes again without its value (it can be read at
its origin, which its headers name).
"""

import logging
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from app.wire import deadletters
from sinks.monitor import Monitor
from sinks.retry import Backoff, Shutdown

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DeadLetter:
    message: Message
    reason: str
    code: str = "invalid_event"  # or refused_by_postgres
    too_large: bool = False  # the broker refused the copy: send it without the value

    def headers(self) -> list[tuple[str, bytes]]:
        m = self.message
        return list(m.headers() or []) + deadletters.headers(self.code, self.reason, m.topic(), m.partition(),
                                                              m.offset(), value_dropped=self.too_large)


class DeadLetters:
    def __init__(self, producer: Producer, topic: str, monitor: Monitor, shutdown: Shutdown) -> None:
        self.producer = producer
        self.topic = topic
        self.monitor = monitor
        self.shutdown = shutdown

    def send(self, dead: list[DeadLetter]) -> None:
        """Produce and wait until the broker has acknowledged them all, retrying those it did not."""
        pending = dead
        backoff = Backoff(self.shutdown)
        while pending:
            failed: list[DeadLetter] = []
            for letter in pending:
                self.produce(letter, failed)
            while self.producer.flush(1.0) > 0:  # undelivered ones fail by delivery.timeout.ms
                self.shutdown.check()
            if failed:
                log.warning("%d dead letters not delivered; retrying", len(failed))
                backoff.wait()
            pending = failed
        self.monitor.dead_letters.inc(len(dead))
        for letter in dead:
            m = letter.message
            log.warning("dead-lettered %s[%d]@%d: %s", m.topic(), m.partition(), m.offset(), letter.reason)

    def produce(self, letter: DeadLetter, failed: list[DeadLetter]) -> None:
        """Hands the dead letter to the producer; a failed delivery adds it to `failed`."""
        def on_delivery(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                letter.too_large = letter.too_large or error.code() == KafkaError.MSG_SIZE_TOO_LARGE
                failed.append(letter)

        m = letter.message
        while True:
            try:
                self.producer.produce(self.topic, key=m.key(), value=None if letter.too_large else m.value(),
                                      headers=letter.headers(), on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.1)
            except KafkaException as error:
                if error.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE or letter.too_large:
                    raise
                letter.too_large = True

    def close(self) -> None:
        self.producer.flush(5)
