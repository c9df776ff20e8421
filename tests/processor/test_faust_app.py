"""The worker's changes to faust's own behaviour (app.agents.faust_app) are in effect."""

import os
import subprocess
import sys

from tests.stack import ROOT

BUILD_CONSUMER = """
import asyncio

async def main():
    from app.agents.worker import app
    consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
    print(type(consumer).__name__, consumer._fetch_max_wait_ms)
    await consumer.stop()

asyncio.run(main())
"""


def test_the_worker_consumer_waits_on_the_broker_for_the_configured_time_not_faust_s_1500_ms(tmp_path) -> None:
    env = {**os.environ, "WORKER_FETCH_MAX_WAIT_MS": "7", "WORKER_DATADIR": str(tmp_path)}
    built = subprocess.run([sys.executable, "-c", BUILD_CONSUMER], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=60, check=True)
    assert built.stdout.split() == ["AIOKafkaConsumer", "7"]
