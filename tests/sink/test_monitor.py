"""The monitor's arithmetic and health rules, without a sink around them."""

from sinks import monitor
from sinks.monitor import Monitor, lag_per_partition

WATERMARKS = {("t", 0): (0, 100), ("t", 1): (40, 90), ("t", 2): (-1001, -1001)}


def test_lag_is_the_log_end_minus_the_stored_position():
    positions = {("t", 0): 60, ("t", 1): None, ("t", 2): 5}
    assert dict(lag_per_partition(positions, WATERMARKS.__getitem__)) == {
        ("t", 0): 40,  # 60..99 not yet written
        ("t", 1): 50,  # never written: everything from the log start
    }  # ("t", 2): log end unknown yet, left out rather than reported as 0


def test_a_position_past_a_stale_log_end_is_no_lag():
    assert dict(lag_per_partition({("t", 0): 120}, WATERMARKS.__getitem__)) == {("t", 0): 0}


def test_only_assigned_partitions_count_and_writes_move_them():
    watched = Monitor(WATERMARKS.__getitem__)
    watched.assigned({("t", 0): 10, ("t", 1): None})
    assert watched.lag() == []  # the loop has not taken the log ends yet
    watched.beat()
    watched.written({("t", 0): 100, ("t", 2): 7})  # t/2 is not ours: ignored
    assert dict(watched.lag()) == {("t", 0): 0, ("t", 1): 50}
    watched.revoked([("t", 1)])
    assert dict(watched.lag()) == {("t", 0): 0}


def test_ready_needs_postgres_and_live_needs_a_turning_loop(monkeypatch):
    watched = Monitor(WATERMARKS.__getitem__)
    assert watched.health() == (True, False, {"loop": True, "postgres": False})
    watched.postgres(True)
    assert watched.health() == (True, True, {"loop": True, "postgres": True})
    monkeypatch.setattr(monitor, "STALL_SECONDS", 0.0)
    assert watched.health() == (False, False, {"loop": False, "postgres": True})
