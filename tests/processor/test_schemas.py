"""Topics as a contract: the committed JSON Schema files are what the models generate, and
every command, reply and event the processor reads or writes validates against them."""

import json
from functools import cache

import orjson
from jsonschema import Draft202012Validator

from app.worker.ticks import tick_value
from app.domain.trip import MS_PER_MINUTE
from app.wire.topics import CONTRACT
from app.wire.contract import BookingSnapshot, EntrySnapshot
from tools.write_schemas import SCHEMAS, stale
from tests.processor.commands import (
    DRIVER,
    PAYMENTS,
    SERVICE,
    create_booking,
    join_waitlist,
    on_booking,
    on_entry,
    on_trip,
    publish_trip,
    rider,
)
from tests.processor.in_process import Log, T0


def test_the_committed_schema_files_are_fresh() -> None:
    assert stale() == [], "run `make schemas` and commit schemas/"


@cache
def validator(path: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / path).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def conversation() -> tuple[list[dict], Log]:
    """Every command type and every event type, in process."""
    log, sent = Log(), []

    def do(command: dict, at: int = T0) -> dict:
        sent.append(command)
        return log.command(command, at)

    do(publish_trip("RS", capacity=6))
    do(on_trip("query_availability", "RS", rider("r")))
    first = do(create_booking("RS", "rider-1", seats=2))["booking"]
    do(on_booking("initiate_payment", first["id"], PAYMENTS, paymentId="p-1"))
    do(on_booking("payment_failed", first["id"], PAYMENTS, paymentId="p-1"))
    do(on_booking("payment_succeeded", first["id"], PAYMENTS, paymentId="p-2", amount=first["totalPrice"]))
    do(on_booking("check_in", first["id"], DRIVER))
    do(on_booking("complete", first["id"], DRIVER))
    second = do(create_booking("RS", "rider-2"))["booking"]
    do(on_booking("payment_succeeded", second["id"], PAYMENTS, paymentId="p-3", amount=second["totalPrice"]))
    do(on_booking("cancel_booking", second["id"], rider("rider-2"), reason="plans changed, sorry"))
    do(on_booking("refund_done", second["id"], PAYMENTS, amount=second["totalPrice"]))
    third = do(create_booking("RS", "rider-3"))["booking"]
    log.tick(T0 + 11 * MS_PER_MINUTE)
    do(on_booking("payment_succeeded", third["id"], PAYMENTS, paymentId="p-4", amount=third["totalPrice"]),
       T0 + 12 * MS_PER_MINUTE)
    fourth = do(create_booking("RS", "rider-4"), T0 + 12 * MS_PER_MINUTE)["booking"]  # LAG-OYO
    do(on_trip("expire_holds", "RS"), T0 + 12 * MS_PER_MINUTE)
    # The waiting list: LAG-IBD sold out, four wait; seats come free and are offered.
    at = T0 + 12 * MS_PER_MINUTE
    do(on_trip("query_seat_map", "RS", rider("r"), originStopId="LAG", destinationStopId="OYO"), at)
    sixth = do(create_booking("RS", "rider-6", seats=3, origin="LAG", destination="IBD"), at)["booking"]
    waiting = [do(join_waitlist("RS", f"waiter-{n}", origin="LAG", destination="IBD"), at)["entry"] for n in range(4)]
    do(on_booking("cancel_booking", fourth["id"], rider("rider-4"), reason="plans changed, sorry"), at)  # waiter-0
    do(on_entry("accept_offer", waiting[0]["id"], rider("waiter-0")), at)
    do(on_entry("leave_waitlist", waiting[1]["id"], rider("waiter-1")), at)
    do(on_booking("cancel_booking", sixth["id"], rider("rider-6"), reason="plans changed, sorry"), at)  # 2, 3
    do(create_booking("RS", "rider-8", origin="LAG", destination="IBD"), at)
    do(join_waitlist("RS", "waiter-4", origin="LAG", destination="IBD"), at)
    do(on_entry("accept_offer", "RS.20300101.AAAAAAAAAAAAAAAA", rider("waiter-0")), at)
    log.tick(at + 16 * MS_PER_MINUTE)  # the offers to waiter-2 and -3 expire; waiter-4 is offered
    do(on_trip("cancel_trip", "RS", SERVICE, reason="road closed"), T0 + 30 * MS_PER_MINUTE)
    do(create_booking("RS", "rider-5", seats=9), T0 + 30 * MS_PER_MINUTE)
    log.put(b"RS:2030-01-01", b'{"type": "create_booking", "commandId": "bad"}', T0)
    return sent, log


def test_every_command_reply_and_event_validates_against_its_schema() -> None:
    commands, log = conversation()
    for command in commands:
        validator(f"commands/{command['type']}.json").validate(command)
    seen = set()
    for topic, _, value in log.sent:
        document = orjson.loads(value)
        if topic == "replies":
            validator("replies/reply.json").validate(document)
        elif topic != CONTRACT.dead_letters:
            validator(f"events/{document['type']}.json").validate(document)
            assert document["eventId"] and (document.get("version") or document["type"] == "booking.refund_required")
        seen.add(topic if topic in ("replies", CONTRACT.dead_letters) else document["type"])
    assert seen == {"replies", CONTRACT.dead_letters, CONTRACT.trip_updated, *CONTRACT.lifecycle, *CONTRACT.waitlist}
    validator("commands/tick.json").validate(orjson.loads(tick_value(T0)))


def test_a_schema_rejects_what_the_processor_would_dead_letter() -> None:
    assert not validator("commands/create_booking.json").is_valid({"type": "create_booking", "commandId": "x"})
    assert not validator("commands/check_in.json").is_valid(
        {"v": 2, "type": "check_in", "commandId": "c", "actor": DRIVER, "bookingId": "R.20300101.AAAAAAAAAAAAAAAA"})


def test_snapshots_carry_their_contracts_keys_in_its_order() -> None:
    """The read side renders keys in the contract's order (sinks.schema): the processor's
    snapshots must too, so a booking reads the same from an event and from the gateway."""
    _, log = conversation()
    documents = [orjson.loads(value) for topic, _, value in log.sent if topic != CONTRACT.dead_letters]
    bookings = [document["booking"] for document in documents if document.get("booking")]
    entries = [document["entry"] for document in documents if document.get("entry")]
    assert bookings and entries
    assert {tuple(booking) for booking in bookings} == {tuple(BookingSnapshot.model_fields)}
    assert {tuple(entry) for entry in entries} == {tuple(EntrySnapshot.model_fields)}
