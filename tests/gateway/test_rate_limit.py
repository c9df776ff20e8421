"""100 requests per minute per user, bursts of 20: the 21st immediate request is a 429."""

import pytest

from gateway.ratelimit import RateLimiter
from tests.support.http import auth


@pytest.mark.integration  # the request it repeats is a read, served from Postgres
def test_the_21st_immediate_request_of_a_user_is_429(reading_client):
    # "immediate" even on a loaded machine: nothing refills
    reading_client.app.state.limiter.clock = lambda: 1000.0
    responses = [reading_client.get("/v1/bookings/upcoming", headers=auth("busy-rider")) for _ in range(21)]
    assert [r.status_code for r in responses[:20]] == [200] * 20
    assert responses[0].headers["ratelimit-remaining"] == "19" and responses[19].headers["ratelimit-remaining"] == "0"
    assert responses[0].headers["ratelimit-limit"] == "100"
    assert responses[0].headers["x-rate-limit-remaining"] == "19"
    refused = responses[20]
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited" and refused.json()["status"] == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-rate-limit-retry-after-seconds"] == refused.headers["retry-after"]
    assert refused.headers["ratelimit-remaining"] == "0"
    # another user is not affected
    assert reading_client.get("/v1/bookings/upcoming", headers=auth("calm-rider")).status_code == 200


def test_unauthenticated_probes_are_not_limited(client):
    assert all(client.get("/health/live").status_code == 200 for _ in range(30))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_refills_at_100_per_minute_up_to_20():
    clock = Clock()
    limiter = RateLimiter(100, 20, clock)
    assert all(limiter.take("u").allowed for _ in range(20))
    refused = limiter.take("u")
    assert not refused.allowed and refused.retry_after == 1 and refused.reset == 12
    clock.now = 0.6  # 100/min = one token every 0.6 s
    assert limiter.take("u").allowed and not limiter.take("u").allowed
    clock.now = 1000.0
    decisions = [limiter.take("u") for _ in range(21)]
    assert [d.allowed for d in decisions] == [True] * 20 + [False]  # never more than the burst


def test_quiet_users_are_forgotten_when_many_are_kept(monkeypatch):
    import gateway.ratelimit as ratelimit

    monkeypatch.setattr(ratelimit, "PRUNE_ABOVE", 3)
    clock = Clock()
    limiter = RateLimiter(100, 20, clock)
    for user in ("a", "b", "c"):
        limiter.take(user)
    clock.now = 60.0  # all full again
    limiter.take("d")
    assert set(limiter._buckets) == {"d"}
