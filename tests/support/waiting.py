"""Polling until a condition holds: a test that passes waits only as long as it must."""

import time


def wait_for(what: str, check, timeout_s: float = 30, every_s: float = 0.5):
    """The first truthy result of `check()`, polled every `every_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every_s)
