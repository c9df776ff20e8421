-- Idempotency-Keys are remembered by each trip's writer, with the outcome of the command
-- they name (gateway/dispatch.py): the gateway no longer keeps them here.
DROP TABLE IF EXISTS idempotency_keys;
