"""Command ids for HTTP requests. The commands themselves are the worker's own wire models
(app.models.commands), built by gateway.dispatch.Dispatcher.command, so what the gateway
sends is what the worker accepts."""

import uuid

# Fixed for good: changing it would change every derived command id, and a client's retry
# with its Idempotency-Key would no longer find the original outcome.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1c3c2e-5b8a-4d1e-9a53-0c7f1e2b9d40")
# Joins the parts. Neither a user id nor a key may hold it (both are refused with control
# characters before they get here), which is what makes the join injective: otherwise
# user "vic" with key "x<SEP>k1" would be user "vic<SEP>x" with key "k1".
SEPARATOR = "\x1f"


def command_id_for(operation: str, user_id: str, idempotency_key: str | None) -> str:
    """Same user + same key + same operation -> same command id, so the worker answers a
    retry with the original reply. Keys are per user (one rider's key never finds another
    rider's booking, unlike the Java service). Without a key every request is new."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    if SEPARATOR in user_id or SEPARATOR in idempotency_key:
        raise ValueError("a user id or idempotency key holds the command id separator")
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, SEPARATOR.join((operation, user_id, idempotency_key))))
