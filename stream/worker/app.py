"""Build the Faust app from settings: no work at import time, no global app."""

from __future__ import annotations

from pathlib import Path

import faust

from stream.security import broker_credentials
from stream.settings import Settings
from stream.worker import agents, web
from stream.worker.runtime import Runtime


def create_app(settings: Settings) -> tuple[faust.App, Runtime]:
    """A configured app with its topics, agents and web views, and its runtime."""
    session = settings.session_timeout_s
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)  # Faust makes only the leaf
    guard = web.guard_for(settings)
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        broker_credentials=broker_credentials(settings),  # SASL and/or TLS, or None
        store="memory://",
        datadir=f"{settings.data_dir}/{{conf.name}}-data",
        # State lives in Redis; Faust only consumes, routes and produces.
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        producer_acks=-1,
        stream_publish_on_commit=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_heartbeat_interval=max(0.5, session / 10),
        broker_rebalance_timeout=max(session * 2, 20.0),
        broker_commit_interval=1.0,
        web_port=settings.web_port,
        web_host=settings.web_host,
        # Faust binds web_bind (default 0.0.0.0) and uses web_host only in its own URL.
        web_bind=settings.web_host,
        web_application_options={"middlewares": [web.auth_middleware(guard)]},
        web_in_thread=False,
        loghandlers=[],
    )
    runtime = Runtime(settings)
    app.add_dependency(runtime)
    topics = agents.Topics.declare(app, settings)
    agents.register(app, settings, runtime, topics)
    web.register(app, settings, runtime, guard)
    return app, runtime
