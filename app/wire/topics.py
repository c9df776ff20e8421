"""Topic names: a contract with the teams that produce to and consume from them.

`Topics` holds one deployment's names: the contract's (`CONTRACT`), behind its
TOPIC_NAMESPACE (empty in production), so that several systems can share one cluster
without reading each other's commands; the tests run each worker group in a namespace of
its own. Each process builds its `Topics` from its settings at start (`Topics.of`) and
hands it to what sends and reads. An event's `type` is its topic's contract name
(`Topics.event_type`), so the records a processor writes are the same bytes in every
namespace.
"""

from app.config import Settings
from app.domain.booking import Status
from app.domain.waitlist import EntryStatus

# Headers a command carries so its reply finds the way back.
REPLY_TO = "reply-to"
REPLY_PARTITION = "reply-partition"
# On a reply that repeats the outcome of a command id handled before (a retry).
REPLAYED = "replayed"

# The key of the clock ticks written into every partition of the command topic. A trip key
# always contains ":", so no command can be mistaken for a tick.
TICK_KEY = b"tick"


class Topics:
    """Every topic name of one deployment, its namespace first."""

    def __init__(self, namespace: str = "") -> None:
        self.namespace = namespace
        self.commands = namespace + "booking.commands"  # keyed by trip "<routeId>:<travelDate>", broker-stamped time
        self.replies = namespace + "booking.replies"  # one partition per gateway process, key = command id
        self.trips = namespace + "trips.catalog"  # compacted, published by the route service, keyed by trip
        self.trip_updated = namespace + "trip.updated"  # the processor's view of each trip, after every change
        self.dead_letters = namespace + "booking.deadletter"
        self.dead_letter_replays = namespace + "booking.deadletter.replays"  # compacted (tools.deadletters)
        self.audit = namespace + "booking.audit"  # who did what over HTTP, keyed by user id (gateway.audit)

        # A booking's lifecycle, keyed by booking id.
        self.created = namespace + "booking.created"
        self.payment_initiated = namespace + "booking.payment_initiated"
        self.payment_failed = namespace + "booking.payment_failed"
        self.confirmed = namespace + "booking.confirmed"
        self.cancelled = namespace + "booking.cancelled"
        self.expired = namespace + "booking.expired"
        self.checked_in = namespace + "booking.checked_in"
        self.completed = namespace + "booking.completed"
        self.refunded = namespace + "booking.refunded"
        self.refund_required = namespace + "booking.refund_required"
        # The topic of a booking's move to each status.
        self.lifecycle_by_status = {
            Status.HELD: self.created,
            Status.PAYMENT_INITIATED: self.payment_initiated,
            Status.CONFIRMED: self.confirmed,
            Status.CANCELLED: self.cancelled,
            Status.EXPIRED: self.expired,
            Status.CHECKED_IN: self.checked_in,
            Status.COMPLETED: self.completed,
            Status.REFUNDED: self.refunded,
        }
        self.lifecycle = (*self.lifecycle_by_status.values(), self.payment_failed, self.refund_required)

        # A waiting-list entry's lifecycle, keyed by entry id.
        self.waitlist_joined = namespace + "waitlist.joined"
        self.waitlist_offered = namespace + "waitlist.offered"
        self.waitlist_accepted = namespace + "waitlist.accepted"
        self.waitlist_offer_expired = namespace + "waitlist.offer_expired"
        self.waitlist_left = namespace + "waitlist.left"
        self.waitlist_cancelled = namespace + "waitlist.cancelled"
        self.waitlist_by_status = {
            EntryStatus.WAITING: self.waitlist_joined,
            EntryStatus.OFFERED: self.waitlist_offered,
            EntryStatus.ACCEPTED: self.waitlist_accepted,
            EntryStatus.OFFER_EXPIRED: self.waitlist_offer_expired,
            EntryStatus.LEFT: self.waitlist_left,
            EntryStatus.CANCELLED: self.waitlist_cancelled,
        }
        self.waitlist = tuple(self.waitlist_by_status.values())

    @classmethod
    def of(cls, settings: Settings) -> "Topics":
        return cls(settings.topic_namespace)

    def named(self, contract_name: str) -> str:
        """This deployment's name of a topic (`CONTRACT`'s names are what the pure renderers
        write: app.wire.outbound)."""
        return self.namespace + contract_name

    def event_type(self, topic: str) -> str:
        """The event type of the records on `topic`: its contract name."""
        return topic.removeprefix(self.namespace)


CONTRACT = Topics()  # the names without a namespace: event types, schema files, docs
