"""The project's commands, added to the Faust app's own command line.

``python -m stream --help`` lists them next to Faust's (``worker``, ...).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.cli import AppCommand, argument, option

from stream.settings import Settings


def register(app: faust.App, settings: Settings) -> None:
    """Attach the project's commands to ``app``'s command line."""

    @app.command(
        argument("action", type=str),
        argument("name", type=str, required=False),
        option("--state-dir", type=str, default=None, help="Where pids, logs and AOF go."),
        option(
            "--redis-arg",
            "redis_args",
            multiple=True,
            help="Extra redis-server argument, repeatable (e.g. --redis-arg=--requirepass ...).",
        ),
        option("--timeout", type=float, default=None, help="Seconds to wait."),
    )
    async def dev(
        self: AppCommand,
        action: str,
        name: str | None,
        state_dir: str | None,
        redis_args: tuple[str, ...],
        timeout: float | None,
    ) -> None:
        """Local broker (Tansu) and Redis on the ports of RTP_BROKER and RTP_REDIS_URL:
        up | down | status | kill NAME | start NAME."""
        from stream.devtools.dev import run_dev

        code = await asyncio.to_thread(
            run_dev,
            settings,
            action,
            name,
            state_dir=state_dir,
            redis_args=redis_args,
            timeout=timeout,
            say=self.say,
        )
        if code:
            raise SystemExit(code)

    @app.command(
        argument("category", type=str),
        option("--kind", type=str, default="bought", help="bought (co-purchase) or viewed."),
        option("--k", type=int, default=10, help="Rules per antecedent item."),
        option("--limit", type=int, default=50, help="Rules printed (best lift first)."),
        option("--min-count", type=float, default=None, help="Support floor (sessions)."),
    )
    async def rules(
        self: AppCommand,
        category: str,
        kind: str,
        k: int,
        limit: int,
        min_count: float | None,
    ) -> None:
        """Association rules (support, confidence, lift) of a category's items, from the
        streaming pair counts; CATEGORY is a level of the category path, `*` every item."""
        from profiles.redis.catalog import RedisCatalog
        from profiles.redis.client import async_client
        from stream.cli.together import KINDS, category_rules
        from stream.worker.compose import together_reader

        if kind not in KINDS or k < 1 or limit < 1:
            raise SystemExit("--kind is bought or viewed; --k and --limit are >= 1")
        client = async_client(settings.redis.url.get_secret_value(), settings.redis.tls)
        try:
            found = await category_rules(
                together_reader(settings, client),
                RedisCatalog(client),
                category,
                KINDS[kind],
                k,
                settings.together.min_count if min_count is None else min_count,
            )
        finally:
            await client.aclose()
        self.say(f"{len(found)} rules for {category!r} ({kind} together); best {limit}:")
        for rule in found[:limit]:
            self.say(rule.line())

    @app.command(
        option(
            "--rate", type=float, default=500.0, help="Events per second (0: as fast as possible)."
        ),
        option("--duration", type=float, default=None, help="Stop after this many seconds."),
        option("--count", type=int, default=None, help="Stop after this many events."),
        option("--users", type=int, default=1000, help="Synthetic users."),
        option("--products", type=int, default=2000, help="Synthetic catalog size."),
        option("--seed", type=int, default=7, help="Random seed (same seed, same traffic)."),
        option(
            "--history-days",
            type=float,
            default=None,
            help="Generate a past log over this many days (event time) instead of live traffic.",
        ),
        option("--replay", type=str, default=None, help="Replay events from this JSONL file."),
        option("--out", type=str, default=None, help="Write events to this JSONL file, not Kafka."),
        option("--no-key", is_flag=True, default=False, help="Send unkeyed (worker repartitions)."),
        option(
            "--bad-share", type=float, default=0.0, help="Share of malformed messages to mix in."
        ),
        option("--no-catalog", is_flag=True, default=False, help="Skip the catalog events."),
    )
    async def produce(
        self: AppCommand,
        rate: float,
        duration: float | None,
        count: int | None,
        users: int,
        products: int,
        seed: int,
        history_days: float | None,
        replay: str | None,
        out: str | None,
        no_key: bool,
        bad_share: float,
        no_catalog: bool,
    ) -> None:
        """Generate realistic traffic (or replay a JSONL log) into the input topic."""
        from stream.devtools.produce import Plan, send_events
        from stream.simulation.generator import (
            TrafficConfig,
            TrafficGenerator,
            read_jsonl,
            to_jsonl,
        )

        if not 0.0 <= bad_share < 1.0:
            raise SystemExit("--bad-share must be in [0, 1)")
        events: Any
        if replay:
            events = read_jsonl(Path(replay))
        else:
            gen = TrafficGenerator(TrafficConfig(seed=seed, users=users, products=products))
            body = (
                gen.history(history_days)
                if history_days
                else gen.live(lambda: int(time.time() * 1000))
            )
            events = body if no_catalog else _chain(gen.catalog(), body)
        if out:
            if count is None and not history_days and not replay:
                raise SystemExit("--out with live traffic needs --count")
            written = to_jsonl(_limit(events, count), Path(out))
            self.say(f"wrote {written} events to {out}")
            return
        plan = Plan(
            rate=rate,
            count=count,
            duration_s=duration,
            keyed=not no_key,
            bad_share=bad_share,
            seed=seed,
        )
        sent = await send_events(settings, events, plan)
        self.say(f"sent {sent} messages to {settings.topics.input}")

    @app.command(argument("action", type=str))
    async def topics(self: AppCommand, action: str) -> None:
        """Every topic the worker reads or writes: create (missing ones) | check (drift)."""
        from stream.cli.topics import reconcile, report

        if action not in ("create", "check"):
            raise SystemExit(f"unknown action {action!r}: use create or check")
        rows = await reconcile(settings, create=action == "create")
        self.say(report(rows))
        if not all(row.ok for row in rows):
            raise SystemExit(1)

    @app.command(
        option("--chunk", type=int, default=500, help="Items and users per Redis round trip."),
        option(
            "--dry-run",
            is_flag=True,
            default=False,
            help="Count what would change; write no profile (catalog vectors are cached).",
        ),
    )
    async def reembed(self: AppCommand, chunk: int, dry_run: bool) -> None:
        """After a model change (RTP_MODEL): encode the catalog with it and rebuild (from
        purchases) or drop the user vectors of other models. Safe to repeat or interrupt."""
        from stream.cli.reembed import run, summary

        if chunk < 1:
            raise SystemExit(f"--chunk must be at least 1, got {chunk}")
        if not settings.embedding.enabled:
            raise SystemExit("RTP_EMBEDDINGS is false: there are no vectors to re-embed")
        report = await run(settings, chunk, dry_run)
        self.say(summary(report, dry_run))

    @app.command(argument("user_id", type=str))
    async def profile(self: AppCommand, user_id: str) -> None:
        """Print a user's profile from Redis as JSON."""
        from profiles.core.privacy import pseudonymizer
        from profiles.redis.store import RedisStore
        from stream.worker.web import profile_view

        pseudonyms = pseudonymizer(settings.privacy.pseudonymize, settings.privacy.key)
        store = RedisStore.from_url(settings.redis.url.get_secret_value(), tls=settings.redis.tls)
        try:
            found = await store.get(pseudonyms(user_id) if pseudonyms else user_id)
        finally:
            await store.close()
        if found is None:
            raise SystemExit(f"no profile for user {user_id!r}")
        opts = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        sys.stdout.write(orjson.dumps(profile_view(found, settings), option=opts).decode() + "\n")

    @app.command(
        argument("user_id", type=str),
        option("--k", "k", type=int, default=10, help="How many items."),
        option(
            "--url",
            type=str,
            default=None,
            help="A running worker's web address (default: RTP_WEB_HOST:RTP_WEB_PORT).",
        ),
        option(
            "--token",
            type=str,
            default=None,
            help="API token (default: the first 'read' token of RTP_WEB_TOKENS(_FILE)).",
        ),
    )
    async def recommend(
        self: AppCommand, user_id: str, k: int, url: str | None, token: str | None
    ) -> None:
        """Print a user's recommendations (asked of a running worker, which holds the index)."""
        from stream.cli.web_client import fetch_recommendations
        from stream.tokens import READ, first_with

        base = url or f"http://{settings.web.host}:{settings.web.port}"
        token = token or first_with(READ, settings.web.token_list, settings.web.tokens_file)
        status, body = await fetch_recommendations(base, user_id, k, token)
        if status != 200:
            raise SystemExit(f"{base}: {status} {body.get('error', body)}")
        opts = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        sys.stdout.write(orjson.dumps(body, option=opts).decode() + "\n")

    @app.command(
        option(
            "--timeout",
            type=float,
            default=None,
            help="Counting: seconds to read for (3). Replay: give up after this many seconds "
            "without a record (10).",
        ),
        option(
            "--replay",
            is_flag=True,
            default=False,
            help="Send the dead letters back to the input topic (after a fix); each once: a "
            "second run sends only what is new, an interrupted one resumes.",
        ),
        option("--reason", "reasons", multiple=True, help="With --replay: only this reason."),
        option(
            "--from-start",
            is_flag=True,
            default=False,
            help="With --replay: forget earlier replays and send everything again.",
        ),
    )
    async def dlq(
        self: AppCommand,
        timeout: float | None,
        replay: bool,
        reasons: tuple[str, ...],
        from_start: bool,
    ) -> None:
        """Count dead-lettered messages by reason, or replay them into the input topic."""
        from stream.cli.dlq import dlq_counts

        if replay:
            await _replay(self, settings, set(reasons) or None, timeout or 10.0, from_start)
            return
        if reasons or from_start:
            raise SystemExit("--reason and --from-start go with --replay")
        counts = await dlq_counts(settings, timeout or 3.0)
        if not counts:
            self.say("no dead letters")
        for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            self.say(f"{n:8d}  {reason}")

    @app.command(
        argument("path", type=str),
        option("--examples", type=int, default=3, help="Failures shown per reason."),
    )
    async def validate(self: AppCommand, path: str, examples: int) -> None:
        """Check a JSONL file of events (ours or Segment-spec) offline; exit 1 if any is invalid."""
        from stream.cli.validate import check_lines, render
        from stream.worker.runtime import decode_limits

        try:
            with open(path, "rb") as lines:
                summary = check_lines(
                    lines, decode_limits(settings), int(time.time() * 1000), examples
                )
        except OSError as exc:
            sys.stderr.write(f"error: cannot read {path}: {exc.strerror or exc}\n")
            raise SystemExit(2) from exc
        sys.stdout.write(render(path, summary) + "\n")
        if summary.invalid:
            raise SystemExit(1)

    @app.command(
        option("--plot", type=str, default=None, help="Also write a PNG scatter to this path."),
        option("--sample", type=int, default=300, help="Users sampled per segment."),
    )
    async def segments(self: AppCommand, plot: str | None, sample: int) -> None:
        """Segment summaries for marketers (and a 2-D picture with --plot)."""
        from profiles.redis.store import RedisStore
        from profiles.segments.report import segment_report

        # The secret names erasure markers (read by load); without it the store would
        # create rtp:secret, which a deployment with RTP_PSEUDONYM_KEY never has.
        store = RedisStore.from_url(
            settings.redis.url.get_secret_value(), settings.privacy.key, tls=settings.redis.tls
        )
        try:
            report = await segment_report(
                store, settings.profile.half_life_ms, sample, plot=Path(plot) if plot else None
            )
        finally:
            await store.close()
        opts = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
        sys.stdout.write(orjson.dumps(report, option=opts).decode() + "\n")
        if plot and not report["segments"]:
            # Nothing to draw: say so and fail, rather than claim a file that is not there.
            why = (
                "no segments yet: the model is seeded once RTP_SEGMENT_SEED_USERS users with "
                "embeddings were seen (is a worker running with RTP_SEGMENTS=true?)"
            )
            raise SystemExit(f"error: no plot written to {plot}: {why}")
        if plot:
            self.say(f"wrote {plot}")

    @app.command(option("--topic", "topics", multiple=True, help="Topic (repeatable)."))
    async def lag(self: AppCommand, topics: tuple[str, ...]) -> None:
        """Committed offset, end offset, lag and lag age per partition of the worker group."""
        from stream.cli.lag import group_lag, table

        self.say(table(await group_lag(settings, list(topics) or None)))

    @app.command(
        option("--rate", type=float, default=300.0, help="Events per second of demo traffic."),
        option("--bad-share", type=float, default=0.02, help="Share of malformed messages."),
        option("--duration", type=float, default=None, help="Stop by itself after N seconds."),
    )
    async def demo(self: AppCommand, rate: float, bad_share: float, duration: float | None) -> None:
        """Start broker, Redis, a worker and traffic, and show a live view. Ctrl-C stops all."""
        from stream.devtools.demo import run_demo

        await run_demo(settings, rate=rate, bad_share=bad_share, duration=duration)


async def _replay(
    command: AppCommand,
    settings: Settings,
    reasons: set[str] | None,
    timeout: float,
    from_start: bool,
) -> None:
    """``dlq --replay`` with a progress bar (on stderr) and a summary."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from stream.cli.dlq import replay_dead

    console = Console(stderr=True)
    with Progress(
        TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=console
    ) as bar:
        task = bar.add_task("replay", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = await replay_dead(settings, reasons, timeout, from_start, progress)
    which = f" (reason {', '.join(sorted(reasons))})" if reasons else ""
    command.say(f"replayed {report.sent} dead letters{which} to {settings.topics.input}")
    if report.partitions and not report.total:
        command.say("nothing new: earlier runs replayed every partition up to its end")
    if report.already:
        command.say(f"skipped {report.already} replayed by an earlier run")
    if report.other_reasons:
        command.say(f"left {report.other_reasons} of other reasons")
    for p in report.partitions:
        command.say(
            f"  partition {p.partition}: offsets {p.start}..{p.reached} of {p.end}"
            + ("" if p.reached >= p.end else "  (not finished)")
        )
    for problem in report.problems:
        command.say(f"error: {problem}", file=sys.stderr)
    if not report.complete:
        raise SystemExit(1)


def _chain(first: Any, rest: Any) -> Any:
    yield from first
    yield from rest


def _limit(events: Any, count: int | None) -> Any:
    for n, event in enumerate(events):
        if count is not None and n >= count:
            return
        yield event


def main() -> None:
    """Entry point of ``python -m stream``."""
    from stream.settings import SettingsError, faust_argv
    from stream.worker.app import create_app

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(2) from exc
    app, _ = create_app(settings)
    register(app, settings)
    # RTP_LOG_LEVEL becomes Faust's --loglevel (an explicit -l on the command line wins).
    sys.argv = faust_argv(sys.argv, settings.worker.log_level)
    app.main()
