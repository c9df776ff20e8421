"""Topic names: a contract with the teams that produce to and consume from them."""

from app.domain.booking import Status

COMMANDS = "booking.commands"  # keyed by trip "<routeId>:<travelDate>", broker-stamped time
REPLIES = "booking.replies"  # one partition per gateway process, key = command id
TRIPS = "trips.catalog"  # compacted, published by the route service, keyed by trip
TRIP_UPDATED = "trip.updated"  # the processor's view of each trip, after every change
DEAD_LETTERS = "booking.deadletter"
AUDIT = "booking.audit"  # who did what over HTTP, keyed by user id (gateway.audit)

# Lifecycle topics, keyed by booking id; the event type is the topic name.
CREATED = "booking.created"
PAYMENT_INITIATED = "booking.payment_initiated"
PAYMENT_FAILED = "booking.payment_failed"
CONFIRMED = "booking.confirmed"
CANCELLED = "booking.cancelled"
EXPIRED = "booking.expired"
CHECKED_IN = "booking.checked_in"
COMPLETED = "booking.completed"
REFUNDED = "booking.refunded"
REFUND_REQUIRED = "booking.refund_required"

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

# Headers a command carries so its reply finds the way back.
REPLY_TO = "reply-to"
REPLY_PARTITION = "reply-partition"
