"""A command that carries the fingerprint of the request it stands for (an HTTP request with
an Idempotency-Key): the trip's writer remembers it with the outcome, in the table, so the
same command id with the same fingerprint gets the original outcome and with another one
is refused as idempotency_key_reused, by this worker or by one restarted on its table."""

from dataclasses import replace

from app.domain.commands import CancelBooking, CreateBooking, InitiatePayment, PublishTrip
from app.domain.handle import handle
from app.domain.rejections import Code
from tests.support.core import DAY, POLICY, RIDER, ROUTES, make_trip, published
from tests.tables.support import StoreOverDict

TRIP = make_trip(stops=4, capacity=3)
KEY = TRIP.key.encode()
START = TRIP.departure_ms(0) - 3 * DAY
REASON = "My plans changed, sorry"


def store_with_trip() -> StoreOverDict:
    store = StoreOverDict()
    store.handle(KEY, PublishTrip("publish", ROUTES, TRIP), START, 0, POLICY)
    return store


def workers(store: StoreOverDict) -> tuple[StoreOverDict, StoreOverDict]:
    """The worker that handled the commands, and one restarted on its table."""
    store.flush()
    return store, StoreOverDict(store.table)


def test_the_same_request_again_gets_the_original_outcome():
    store = store_with_trip()
    create = CreateBooking("k1", RIDER, "S0", "S3", 2)
    _, first = store.handle(KEY, create, START, 1, POLICY, fingerprint="f1")
    for worker in workers(store):
        state, again = worker.handle(KEY, create, START + 1, 2, POLICY, fingerprint="f1")
        assert again.duplicate and replace(again, duplicate=False) == first
        assert state.booked == 1


def test_another_request_under_the_same_command_id_is_refused_and_changes_nothing():
    store = store_with_trip()
    _, first = store.handle(KEY, CreateBooking("k1", RIDER, "S0", "S3", 2), START, 1, POLICY, fingerprint="f1")
    for worker in workers(store):
        before = dict(worker.table)
        other_seats = CreateBooking("k1", RIDER, "S0", "S3", 1)
        state, refused = worker.handle(KEY, other_seats, START + 1, 2, POLICY, fingerprint="f2")
        assert (refused.code, refused.events) == (Code.IDEMPOTENCY_KEY_REUSED, ())
        other_operation = InitiatePayment("k1", RIDER, first.booking_id)
        assert worker.handle(KEY, other_operation, START + 2, 3, POLICY, fingerprint="f3")[1].code == \
            Code.IDEMPOTENCY_KEY_REUSED
        assert worker.flush() == [] and worker.table == before and state.booked == 1
        # the first request still gets its own outcome
        assert worker.handle(KEY, CreateBooking("k1", RIDER, "S0", "S3", 2), START + 3, 4, POLICY,
                             fingerprint="f1")[1].booking_id == first.booking_id


def test_a_refusal_is_remembered_with_its_request():
    store = store_with_trip()
    _, full = store.handle(KEY, CreateBooking("full", RIDER, "S0", "S3", 3), START, 1, POLICY)
    too_many = CreateBooking("k2", RIDER, "S0", "S3", 1)
    assert store.handle(KEY, too_many, START + 1, 2, POLICY, fingerprint="f")[1].code == Code.SEATS_UNAVAILABLE
    assert store.handle(KEY, CancelBooking("free", RIDER, full.booking_id, REASON), START + 2, 3, POLICY)[1].accepted
    for worker in workers(store):
        again = worker.handle(KEY, too_many, START + 3, 4, POLICY, fingerprint="f")[1]
        assert (again.code, again.duplicate) == (Code.SEATS_UNAVAILABLE, True), "the seats freed meanwhile"


def test_without_fingerprints_a_repeated_command_id_is_a_retry():
    state = published(TRIP)
    first = handle(state, CreateBooking("c", RIDER, "S0", "S3", 1), START, POLICY, fingerprint="f")
    assert handle(state, CreateBooking("c", RIDER, "S0", "S3", 1), START + 1, POLICY).booking_id == first.booking_id
    plain = published(TRIP)
    handle(plain, CreateBooking("d", RIDER, "S0", "S3", 1), START, POLICY)
    assert handle(plain, CreateBooking("d", RIDER, "S0", "S3", 1), START + 1, POLICY, fingerprint="g").duplicate
