"""Build the Faust app from settings: no work at import time, no global app."""

from __future__ import annotations

from pathlib import Path

import faust

from stream.security import broker_credentials
from stream.settings import Settings
from stream.worker import agents, fetch_wait, records, web
from stream.worker.runtime import Runtime
from stream.worker.transport import Topics, consumer_options


def create_app(settings: Settings) -> tuple[faust.App, Runtime]:
    """A configured app with its topics, agents and web views, and its runtime."""
    records.install()  # a record aiokafka cannot decode must not crash the fetcher
    fetch_wait.install(fetch_wait.wait_ms(settings.ingest.batch_within_s))
    Path(settings.worker.data_dir).mkdir(parents=True, exist_ok=True)  # Faust makes only the leaf
    guard = web.guard_for(settings)
    app = faust.App(
        settings.kafka.app_id,
        broker=settings.kafka.broker,
        broker_credentials=broker_credentials(settings.kafka),  # SASL and/or TLS, or None
        datadir=f"{settings.worker.data_dir}/{{conf.name}}-data",
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.topics.replication,
        # The dead-letter bounds are checked against it (Settings: dead_letters.check_fits).
        producer_max_request_size=settings.ingest.max_request_bytes,
        web_port=settings.web.port,
        web_host=settings.web.host,
        # Faust binds web_bind (default 0.0.0.0) and uses web_host only in its own URL.
        web_bind=settings.web.host,
        web_application_options={"middlewares": [web.auth_middleware(guard)]},
        **consumer_options(settings.kafka.session_timeout_s),
    )
    runtime = Runtime(settings)
    records.listen(runtime.note_skipped)  # counted in rtp_skipped_records_total, logged
    app.add_dependency(runtime)
    topics = Topics.declare(app, settings)
    agents.register(app, settings, runtime, topics)
    web.register(app, settings, runtime, guard)
    return app, runtime
