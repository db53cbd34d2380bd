"""A Faust worker whose only agent counts events: the ceiling Faust itself allows.

Started by ``throughput.py`` as a child process, exactly like the real worker, and measured
the same way: it serves ``/stats`` (``{"consumed": n}``) on its web port and is polled from
outside, then stopped with SIGTERM. The app is configured like :func:`stream.worker.app.create_app`
(same consumer, commit and session settings), so the gap to the pipeline is the pipeline's.

    python benchmarks/faust_noop.py --broker kafka://127.0.0.1:9092 --topic site-events \\
        --app-id noop-1 --web-port 6067 [--mode take|iter]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faust
from faust.types import StreamT
from faust.web import Request, Response, View

from stream.worker.transport import consumer_options


def build_app(args: argparse.Namespace) -> faust.App:
    """The no-op app, consuming as the worker does (``stream/worker/app.py``)."""
    app = faust.App(
        args.app_id,
        broker=args.broker,
        datadir=f"{args.data_dir}/{{conf.name}}-data",
        topic_partitions=4,
        topic_replication_factor=1,
        web_port=args.web_port,
        web_host="127.0.0.1",
        **consumer_options(args.session_timeout),
    )
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    consumed = [0]  # a cell the agent and the web view share

    if args.mode == "take":
        # The pipeline's ingest agent iterates exactly like this.
        @app.agent(topic, name="noop")
        async def noop_take(stream: StreamT[Any]) -> None:
            batches = cast(faust.Stream[Any], stream).take_events(args.batch_max, args.batch_within)
            async for events in batches:
                consumed[0] += len(events)
    else:
        # Plain per-event iteration: Faust's per-message overhead with no batching at all.
        @app.agent(topic, name="noop")
        async def noop_iter(stream: StreamT[Any]) -> None:
            async for _value in stream:
                consumed[0] += 1

    @app.page("/stats")
    async def stats(web: View, request: Request) -> Response:
        return web.json({"consumed": consumed[0]})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Faust no-op consumer for throughput.py.")
    parser.add_argument("--broker", required=True, help="kafka://host:port")
    parser.add_argument("--topic", required=True, help="topic to consume from the beginning")
    parser.add_argument("--app-id", required=True, help="fresh id = fresh consumer group")
    parser.add_argument("--web-port", type=int, required=True, help="port of /stats")
    parser.add_argument(
        "--mode",
        choices=("take", "iter"),
        default="take",
        help="take_events batches (as the pipeline) or per-event iteration",
    )
    parser.add_argument("--batch-max", type=int, default=2000)
    parser.add_argument("--batch-within", type=float, default=0.05)
    parser.add_argument("--session-timeout", type=float, default=6.0)
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument("--loglevel", default="info")
    args = parser.parse_args(argv)
    app = build_app(args)
    # The same Worker class `python -m stream worker` runs, minus the click command line.
    worker = app.Worker(loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
