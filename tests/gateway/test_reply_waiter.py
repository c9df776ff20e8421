"""The ReplyWaiter's matching of replies to waiting requests, the reply partition a process
takes, and a command the producer gave up on: without a broker."""

import asyncio
import functools
import os
import tempfile

import orjson
import pytest
from confluent_kafka import KafkaError

from app.config import get_settings
from app.wire.topics import CONTRACT, REPLAYED
from app.transport.bus import (
    CommandBus,
    KafkaUnavailable,
    ReplyWaiter,
    RequestInFlight,
    choose_reply_partition,
    claim_reply_partition,
)
from tests.support.messages import FakeMessage


def reply(command_id: str, **fields) -> bytes:
    return orjson.dumps({"v": 1, "commandId": command_id, "ok": True, **fields})


def test_reply_partition_is_stable_and_in_range():
    partitions = get_settings().reply_partitions
    assert choose_reply_partition(partitions, "host-a:101") == choose_reply_partition(partitions, "host-a:101")
    chosen = {choose_reply_partition(partitions, f"host-{n}:{n}") for n in range(200)}
    assert chosen == set(range(partitions))  # processes spread over every partition


def test_waiter_takes_the_partition_it_is_given():
    assert ReplyWaiter(get_settings(), partition=3).partition == 3


def in_event_loop(test):
    """Runs an async test in a fresh event loop (no pytest async plugin needed)."""

    @functools.wraps(test)
    def run():
        asyncio.run(test())

    return run


async def deliver(waiter: ReplyWaiter, *messages: FakeMessage) -> None:
    waiter._loop = asyncio.get_running_loop()
    waiter._deliver(list(messages))
    await asyncio.sleep(0)  # the resolution hops through call_soon_threadsafe


@in_event_loop
async def test_reply_resolves_the_waiting_request():
    waiter = ReplyWaiter(get_settings(), partition=0)
    future = waiter.expect("c1")
    await deliver(waiter, FakeMessage(b"c1", reply("c1", tripVersion=2)))
    assert future.result()["tripVersion"] == 2


@in_event_loop
async def test_a_replay_is_marked_as_such():
    waiter = ReplyWaiter(get_settings(), partition=0)
    first, again = waiter.expect("r1"), waiter.expect("r2")
    await deliver(waiter, FakeMessage(b"r1", reply("r1")), FakeMessage(b"r2", reply("r2"), headers=[
        ("other", b"x"), (REPLAYED, b"true")]))
    assert REPLAYED not in first.result() and again.result()[REPLAYED] is True


@in_event_loop
async def test_replies_for_other_processes_are_skipped_unparsed():
    waiter = ReplyWaiter(get_settings(), partition=0)
    future = waiter.expect("mine")
    await deliver(waiter, FakeMessage(b"theirs", b"not even json"), FakeMessage(b"mine", reply("mine")))
    assert future.result()["commandId"] == "mine"


@in_event_loop
async def test_keyless_reply_is_matched_by_its_body():
    waiter = ReplyWaiter(get_settings(), partition=0)
    future = waiter.expect("c2")
    await deliver(waiter, FakeMessage(None, reply("other")), FakeMessage(None, reply("c2")))
    assert future.result()["commandId"] == "c2"


@in_event_loop
async def test_a_duplicate_reply_is_ignored():
    waiter = ReplyWaiter(get_settings(), partition=0)
    future = waiter.expect("c3")
    await deliver(waiter, FakeMessage(b"c3", reply("c3", n=1)), FakeMessage(b"c3", reply("c3", n=2)))
    assert future.result()["n"] == 1


@in_event_loop
async def test_a_reply_after_the_timeout_is_harmless():
    waiter = ReplyWaiter(get_settings(), partition=0)
    future = waiter.expect("c4")
    future.cancel()
    waiter.forget("c4", future)
    await deliver(waiter, FakeMessage(b"c4", reply("c4")))
    assert future.cancelled()


@in_event_loop
async def test_unreadable_reply_is_skipped():
    waiter = ReplyWaiter(get_settings(), partition=0)
    future = waiter.expect("c5")
    await deliver(waiter, FakeMessage(b"c5", b"{broken"))
    assert not future.done()


@in_event_loop
async def test_the_same_command_id_twice_in_flight_is_refused():
    waiter = ReplyWaiter(get_settings(), partition=0)
    first = waiter.expect("c6")
    with pytest.raises(RequestInFlight):
        waiter.expect("c6")
    waiter.forget("c6", first)
    waiter.expect("c6")  # free again once the first is done


@in_event_loop
async def test_reply_whose_body_is_not_an_object_is_skipped():
    waiter = ReplyWaiter(get_settings(), partition=0)
    future = waiter.expect("c7")
    await deliver(waiter, FakeMessage(b"c7", b"[1, 2]"), FakeMessage(b"c7", b'{"commandId": ["c7"]}'))
    assert not future.done()


def test_processes_of_one_host_read_different_reply_partitions(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    held = [claim_reply_partition(3, "replies", "broker:9092", "host:1") for _ in range(3)]
    assert sorted(partition for partition, _ in held) == [0, 1, 2] and all(lock is not None for _, lock in held)
    assert claim_reply_partition(3, "replies", "broker:9092", "host:1")[1] is None, "all taken: shared"
    assert claim_reply_partition(3, "other-replies", "broker:9092", "host:1")[1] is not None
    partition, lock = held[1]
    os.close(lock)  # as when its process ends, however it ends
    assert claim_reply_partition(3, "replies", "broker:9092", "host:2")[0] == partition


@in_event_loop
async def test_a_command_the_producer_gave_up_on_fails_its_request_at_once():
    bus = CommandBus(get_settings(), reply_partition=0)
    bus._loop = asyncio.get_running_loop()
    future = bus._replies.expect("lost")
    bus._undelivered(KafkaError(KafkaError._MSG_TIMED_OUT), FakeMessage(b"k", b"{}", topic=CONTRACT.audit))
    bus._undelivered(KafkaError(KafkaError._MSG_TIMED_OUT), FakeMessage(b"k", reply("lost"), topic=bus.commands_topic))
    with pytest.raises(KafkaUnavailable):
        await asyncio.wait_for(future, 1)
