"""Topic names: a contract with the teams that produce to and consume from them.

`TOPIC_NAMESPACE` (empty in production) prefixes every name, so that several systems can
share one cluster without reading each other's commands: the tests run each worker group
in a namespace of its own. An event's `type` is its topic's name without the prefix, so
the records a processor writes are the same bytes in every namespace.
"""

from app.config import get_settings
from app.domain.booking import Status
from app.domain.waitlist import EntryStatus

NAMESPACE = get_settings().topic_namespace

COMMANDS = NAMESPACE + "booking.commands"  # keyed by trip "<routeId>:<travelDate>", broker-stamped time
REPLIES = NAMESPACE + "booking.replies"  # one partition per gateway process, key = command id
TRIPS = NAMESPACE + "trips.catalog"  # compacted, published by the route service, keyed by trip
TRIP_UPDATED = NAMESPACE + "trip.updated"  # the processor's view of each trip, after every change
DEAD_LETTERS = NAMESPACE + "booking.deadletter"
DEAD_LETTER_REPLAYS = NAMESPACE + "booking.deadletter.replays"  # compacted: dead letters replayed (tools.deadletters)
AUDIT = NAMESPACE + "booking.audit"  # who did what over HTTP, keyed by user id (gateway.audit)

# Lifecycle topics, keyed by booking id; the event type is the topic name.
CREATED = NAMESPACE + "booking.created"
PAYMENT_INITIATED = NAMESPACE + "booking.payment_initiated"
PAYMENT_FAILED = NAMESPACE + "booking.payment_failed"
CONFIRMED = NAMESPACE + "booking.confirmed"
CANCELLED = NAMESPACE + "booking.cancelled"
EXPIRED = NAMESPACE + "booking.expired"
CHECKED_IN = NAMESPACE + "booking.checked_in"
COMPLETED = NAMESPACE + "booking.completed"
REFUNDED = NAMESPACE + "booking.refunded"
REFUND_REQUIRED = NAMESPACE + "booking.refund_required"

LIFECYCLE_BY_STATUS = {
    Status.HELD: CREATED,
    Status.PAYMENT_INITIATED: PAYMENT_INITIATED,
    Status.CONFIRMED: CONFIRMED,
    Status.CANCELLED: CANCELLED,
    Status.EXPIRED: EXPIRED,
    Status.CHECKED_IN: CHECKED_IN,
    Status.COMPLETED: COMPLETED,
    Status.REFUNDED: REFUNDED,
}
LIFECYCLE = (*LIFECYCLE_BY_STATUS.values(), PAYMENT_FAILED, REFUND_REQUIRED)

# Waiting-list lifecycle topics, keyed by entry id; the event type is the topic name.
WAITLIST_JOINED = NAMESPACE + "waitlist.joined"
WAITLIST_OFFERED = NAMESPACE + "waitlist.offered"
WAITLIST_ACCEPTED = NAMESPACE + "waitlist.accepted"
WAITLIST_OFFER_EXPIRED = NAMESPACE + "waitlist.offer_expired"
WAITLIST_LEFT = NAMESPACE + "waitlist.left"
WAITLIST_CANCELLED = NAMESPACE + "waitlist.cancelled"

WAITLIST_BY_STATUS = {
    EntryStatus.WAITING: WAITLIST_JOINED,
    EntryStatus.OFFERED: WAITLIST_OFFERED,
    EntryStatus.ACCEPTED: WAITLIST_ACCEPTED,
    EntryStatus.OFFER_EXPIRED: WAITLIST_OFFER_EXPIRED,
    EntryStatus.LEFT: WAITLIST_LEFT,
    EntryStatus.CANCELLED: WAITLIST_CANCELLED,
}
WAITLIST = tuple(WAITLIST_BY_STATUS.values())


def event_type(topic: str) -> str:
    return topic.removeprefix(NAMESPACE)

# Headers a command carries so its reply finds the way back.
REPLY_TO = "reply-to"
REPLY_PARTITION = "reply-partition"
# On a reply that repeats the outcome of a command id handled before (a retry).
REPLAYED = "replayed"

# The key of the clock ticks written into every partition of the command topic. A trip key
# always contains ":", so no command can be mistaken for a tick.
TICK_KEY = b"tick"
