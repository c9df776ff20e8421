"""The one settings object: every process (worker, gateway, sink, scripts) reads its
configuration here, from environment variables (names are the upper-cased fields)."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain.policy import Policy

# The business rules' defaults are the core's (app.domain.policy); these may be tuned.
RULES = Policy()
POLICY_SETTINGS = ("max_seats_per_booking", "booking_close_minutes", "hold_minutes", "payment_hold_minutes",
                   "hold_limit_seats_per_trip", "trip_days_ahead_max", "trip_days_behind_max", "trip_capacity_max",
                   "offer_minutes", "waitlist_entries_max", "outcome_retention_hours")

ROOT = Path(__file__).resolve().parent.parent
# The HS256 key every checkout knows: accepted only with ENVIRONMENT=development.
DEVELOPMENT_JWT_SECRET = "dev-secret-change-me-please-32-bytes!"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    # "development" allows what only a developer's machine may have (the well-known JWT key).
    # Anything else is production: `make run`, `make test` and compose say development.
    environment: Literal["development", "production"] = "production"

    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql://openride:openride@127.0.0.1:5433/openride"

    # Topology. The partition count is effectively permanent: choose it with headroom.
    command_partitions: int = 24
    reply_partitions: int = 8
    event_partitions: int = 12
    # Prefixes every topic name (app.wire.topics): isolates a test run or an environment
    # on a shared cluster. Empty in production.
    topic_namespace: str = ""
    # Replicas of every topic the project creates (app.transport.admin, and faust's changelogs and
    # leader topic: faust reads the same variable). 1 is for a one-broker development
    # cluster only; 3 on a real one, so that losing a broker loses nothing.
    topic_replication_factor: int = 1
    # min.insync.replicas of those topics: how many replicas must hold a record before a
    # producer with acks=all is told it is written. 0 takes a majority of the replicas
    # (2 of 3): one broker may be down and writes go on; a write acknowledged is on two.
    topic_min_insync_replicas: int = 0

    # Worker. WORKER_ID names the consumer group and the tables' changelog topics: every
    # worker of one deployment shares it.
    worker_id: str = "openride-booking"
    # One data dir per worker process (RocksDB locks it): a worker restarted on its own
    # dir replays only the changelog's tail, on an empty one it rebuilds from the changelog.
    worker_datadir: Path = ROOT / ".local" / "worker"
    # Per partition DB and table (faust opens one RocksDB per partition it holds).
    rocksdb_block_cache_bytes: int = 32 * 1024 * 1024
    rocksdb_write_buffer_bytes: int = 8 * 1024 * 1024
    # A batch of commands (app.worker.batch): what the worker's agent has been handed, up to
    # this many records, the partitions in turn. A command waits for the batch in hand,
    # then is in the next one.
    worker_batch_records: int = 500
    # The longest a worker's fetch waits on the broker for records (faust's own is 1.5 s):
    # also how long a busy partition can stall behind a fetch of idle ones
    # (app.worker.faust_app.ShortFetchConsumerThread).
    worker_fetch_max_wait_ms: int = 50
    # How much of one partition a worker fetches at a time (faust's own is 1 MiB; at least
    # one producer batch whatever this says). Much less than a batch of commands starves a
    # busy trip; much more fills the worker's memory with the backlog of every partition
    # when it catches up (docs/processor.md, "Catching up"). Not while recovering: then
    # faust's (app.worker.faust_app).
    worker_fetch_partition_bytes: int = 65536
    # Decoded trip states kept in memory between commands (an LRU), per worker process.
    worker_trips_cached: int = 10_000
    worker_standby_replicas: int = 1
    # Static group membership (e.g. the pod name, unique per worker): a worker restarted
    # within the session timeout gets its partitions back without a rebalance. Empty:
    # dynamic membership.
    worker_instance_id: str = ""
    # How long the group waits for a silent worker (killed, hung) before its partitions
    # move to another: the longest pause a crash causes on those partitions.
    worker_session_timeout_seconds: float = 30.0
    worker_heartbeat_seconds: float = 3.0
    # The leader worker writes a clock tick into every command partition this often; a
    # hold expires at most this long (plus processing) after its time is up.
    tick_interval_seconds: float = 1.0
    # How often a worker logs the commands/s it processed.
    worker_rate_log_seconds: float = 10.0
    # The worker's own HTTP server: /metrics (Prometheus), /health/live, /health/ready
    # (app.worker.monitor). Port 0 takes any free port and logs it (tests run several).
    worker_http_host: str = "127.0.0.1"
    worker_http_port: int = 9109

    # Business rules (see app.domain.policy.Policy)
    max_seats_per_booking: int = RULES.max_seats_per_booking
    booking_close_minutes: int = RULES.booking_close_minutes
    hold_minutes: int = RULES.hold_minutes
    payment_hold_minutes: int = RULES.payment_hold_minutes
    # Seats one rider may hold unpaid on one trip (exact: the trip's owner counts them).
    hold_limit_seats_per_trip: int = RULES.hold_limit_seats_per_trip
    # Trips may be published from TRIP_DAYS_BEHIND_MAX days before the record's date to
    # TRIP_DAYS_AHEAD_MAX days after it.
    trip_days_ahead_max: int = RULES.trip_days_ahead_max
    trip_days_behind_max: int = RULES.trip_days_behind_max
    # The most seats a trip may have: 1,000 at most (app.domain.trip.MAX_CAPACITY).
    trip_capacity_max: int = RULES.trip_capacity_max
    # Waiting lists: how long freed seats offered to an entry are held for it, and how
    # many entries (waiting or holding an offer) one trip's list takes.
    offer_minutes: int = RULES.offer_minutes
    waitlist_entries_max: int = RULES.waitlist_entries_max
    # How long a re-sent command id (a retried Idempotency-Key) gets its remembered outcome
    # (a rejection, a trip command, a refund demand, any outcome of a keyed request); ticks
    # delete these an hour after (app.tables.store), so rejected requests cannot grow the
    # tables for ever.
    outcome_retention_hours: int = RULES.outcome_retention_hours

    # Gateway
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    reply_timeout_seconds: float = 10.0
    jwt_secret: str = DEVELOPMENT_JWT_SECRET
    jwt_algorithm: str = "HS256"
    jwt_public_key: str = ""  # PEM, or a path to one, when jwt_algorithm is RS256/ES256
    jwt_audience: str = ""  # when set, tokens must carry this `aud`
    jwt_issuer: str = ""  # when set, tokens must carry this `iss`
    # Tokens valid for longer (exp - iat, or exp - now without iat) are refused: a leaked
    # token must not stay useful for long.
    jwt_max_lifetime_seconds: int = 86_400
    # Requests with a missing or bad token, per client address and gateway process.
    failed_auth_per_minute: int = 30
    failed_auth_burst: int = 10
    # Seats one rider may hold unpaid across all trips, per gateway process (the gateway
    # counts the holds it created until they are paid, cancelled or due).
    hold_limit_seats_per_rider: int = 16
    # Token bucket per user, per gateway process (N processes allow N times as much).
    rate_limit_per_minute: int = 100
    rate_limit_burst: int = 20
    # Comma-separated origins allowed to call from a browser ("*" for any); empty: no CORS.
    cors_origins: str = ""

    # Sink
    sink_group: str = "openride-sink"
    sink_batch_size: int = 2000
    sink_batch_wait_ms: int = 50
    # Static group membership (e.g. the pod name): a sink restarted after a crash gets its
    # partitions back at once instead of after the session timeout. Unique per replica.
    sink_instance_id: str = ""
    # The sink's own HTTP server: /metrics (Prometheus, lag per partition), /health/live,
    # /health/ready. Port 0 takes any free port and logs it (tests run several sinks).
    sink_http_host: str = "127.0.0.1"
    sink_http_port: int = 9108

    @model_validator(mode="after")
    def _writable(self) -> "Settings":
        if not 1 <= self.min_insync_replicas() <= self.topic_replication_factor:
            raise ValueError(f"TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) must be between 1 and "
                             f"TOPIC_REPLICATION_FACTOR ({self.topic_replication_factor}): no write could succeed")
        return self

    def min_insync_replicas(self) -> int:
        return self.topic_min_insync_replicas or self.topic_replication_factor // 2 + 1

    def policy(self) -> Policy:
        return Policy(**{name: getattr(self, name) for name in POLICY_SETTINGS})


@lru_cache
def get_settings() -> Settings:
    return Settings()
