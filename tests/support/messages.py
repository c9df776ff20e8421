"""A record as confluent-kafka's consumer hands it over, made by hand: for the code that
reads consumed messages (the sink's parser, the gateway's reply waiter) without a broker."""

from typing import Any


class FakeMessage:
    """The part of confluent_kafka.Message our consumers read."""

    def __init__(self, key: bytes | None, value: bytes, *, topic: str = "", partition: int = 0, offset: int = 0,
                 headers: list[tuple[str, bytes]] | None = None, error: Any = None):
        self._key, self._value, self._topic = key, value, topic
        self._partition, self._offset = partition, offset
        self._headers, self._error = headers, error

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def error(self) -> Any:
        return self._error
