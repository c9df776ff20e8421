"""The worker's changes to faust's own behaviour (app.worker.faust_app) are in effect."""

import asyncio

from app.config import Settings
from app.worker.bootstrap import build_worker


def test_the_worker_consumer_waits_on_the_broker_for_the_configured_time_not_faust_s_1500_ms(tmp_path) -> None:
    app = build_worker(Settings(worker_fetch_max_wait_ms=7, worker_datadir=tmp_path))

    async def built() -> tuple[str, int]:
        consumer = app.consumer._new_consumer_thread()._create_worker_consumer(app.transport)
        try:
            return type(consumer).__name__, consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(built()) == ("AIOKafkaConsumer", 7)
