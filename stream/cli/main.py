"""The project's commands, added to the Faust app's own command line.

``python -m stream --help`` lists them next to Faust's (``worker``, ...).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
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
        option(
            "--redis-cluster",
            is_flag=True,
            default=False,
            help="With up: a local Redis Cluster (3 masters, 3 replicas) instead of one Redis, "
            "on the port of a redis+cluster:// RTP_REDIS_URL and the five after it (else 7000).",
        ),
    )
    async def dev(
        self: AppCommand,
        action: str,
        name: str | None,
        state_dir: str | None,
        redis_args: tuple[str, ...],
        timeout: float | None,
        redis_cluster: bool,
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
            redis_cluster=redis_cluster,
            say=self.say,
        )
        if code:
            raise SystemExit(code)

    @app.command(
        argument("action", type=str),
        option("--alpha", type=float, default=0.05, help="Significance level of the interval."),
        option("--json", "as_json", is_flag=True, default=False, help="Print the report as JSON."),
    )
    async def experiment(self: AppCommand, action: str, alpha: float, as_json: bool) -> None:
        """The running experiment (RTP_EXPERIMENT): `report` prints conversion per arm, the
        lift over the holdout with its confidence interval, the z-test and the users per arm
        the observed effect needs for 80% power."""
        from profiles.experiments.report import lines
        from stream.cli.experiment import experiment_report

        if action != "report" or not 0 < alpha < 1:
            raise SystemExit("usage: experiment report [--alpha A] [--json] (0 < A < 1)")
        rep = await experiment_report(settings, alpha)
        if as_json:
            self.say(orjson.dumps(rep, option=orjson.OPT_INDENT_2).decode())
            return
        self.say(f"experiment {rep['experiment']!r}, control {rep['control']!r}:")
        for line in lines(rep):
            self.say(line)

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
        option(
            "--attacks",
            type=int,
            default=0,
            help="With --history-days: plant this many bots, card-testing bursts, review-spam "
            "bursts and account takeovers each (stream/simulation/attacks.py).",
        ),
        option(
            "--format",
            "fmt",
            type=click.Choice(["ours", "segment"]),
            default="ours",
            help="Generated traffic as our events, or as Segment-spec calls "
            "(stream/simulation/segment.py; catalog events stay ours).",
        ),
        option(
            "--refunds",
            type=float,
            default=0.0,
            help="Share of generated orders refunded or cancelled later (some partial, some "
            "arriving late).",
        ),
        option(
            "--removals",
            type=float,
            default=0.0,
            help="Share of generated cart adds removed from the cart again.",
        ),
        option(
            "--logins",
            type=float,
            default=0.0,
            help="Share of sessions browsing anonymously until a login at their first cart add "
            "(identity stitching; with --format segment: calls with only an anonymousId, then "
            "an identify).",
        ),
        option(
            "--answer",
            type=float,
            default=0.0,
            help="Live traffic only: the generated users answer the lists the worker pushes "
            "(a click with its recommendation_id, then a purchase) with this chance per "
            "relevant item (stream/simulation/respond.py); 0: they ignore them.",
        ),
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
        attacks: int,
        fmt: str,
        refunds: float,
        removals: float,
        logins: float,
        answer: float,
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
        if attacks and not history_days:
            raise SystemExit("--attacks needs --history-days")
        if not (0.0 <= refunds <= 1.0 and 0.0 <= removals <= 1.0 and 0.0 <= logins <= 1.0):
            raise SystemExit("--refunds, --removals and --logins must be in [0, 1]")
        if not 0.0 <= answer <= 1.0:
            raise SystemExit("--answer must be in [0, 1]")
        if answer and (replay or history_days or out or fmt != "ours"):
            raise SystemExit("--answer needs live traffic of our events sent to Kafka")
        events: Any
        if replay:
            events = read_jsonl(Path(replay))
        else:
            traffic = TrafficConfig(
                seed=seed, users=users, products=products, refund_p=refunds, removal_p=removals
            )
            gen = TrafficGenerator(traffic)
            body: Iterable[dict[str, Any]] = (
                gen.history(history_days)
                if history_days
                else gen.live(lambda: int(time.time() * 1000))
            )
            if attacks and history_days:
                from stream.simulation.attacks import AttackConfig, plant

                config = AttackConfig(
                    seed=seed, per_kind=attacks, first_day=0.1 * history_days, last_day=history_days
                )
                body, incidents = plant(list(body), gen.catalog(), config, gen.config.start_ms)
                for incident in incidents:
                    self.say(f"planted {incident.kind} {incident.user_id} at {incident.start}")
            if logins:
                from stream.simulation.anonymous import with_logins

                body = with_logins(body, logins)
            events = body if no_catalog else _chain(gen.catalog(), body)
            if fmt == "segment":
                from stream.simulation.segment import render_all

                events = render_all(events)
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
        if not answer:
            sent = await send_events(settings, events, plan)
            self.say(f"sent {sent} messages to {settings.topics.input}")
            return
        from stream.devtools.answer import LIVE_DELAY_S, answer_lists
        from stream.simulation.respond import Responder, ResponseConfig

        responder = Responder(gen, ResponseConfig(answer, delay_s=LIVE_DELAY_S, seed=seed))
        stop = asyncio.Event()
        answering = asyncio.create_task(answer_lists(settings, responder, stop))
        try:
            sent = await send_events(settings, events, plan)
        finally:
            stop.set()
            answered = await answering
        self.say(f"sent {sent} messages and {answered} answers to {settings.topics.input}")

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
        argument("action", type=str),
        option("--to", "to", type=int, required=True, help="The new number of owner partitions."),
        option("--routed-topic", type=str, default=None, help="Default: <routed>-p<M>."),
        option("--settle", type=float, default=10.0, help="Quiet seconds required."),
    )
    async def partitions(
        self: AppCommand, action: str, to: int, routed_topic: str | None, settle: float
    ) -> None:
        """Grow the owner partitions (RTP_PARTITIONS) after draining: grow --to M."""
        from stream.cli.partitions import grow

        if action != "grow":
            raise SystemExit(f"unknown action {action!r}: use grow")
        await grow(settings, to, routed_topic, settle, say=self.say)

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

    @app.command(
        argument("action", type=str),
        argument("path", type=str, required=False),
        option("--as-of", type=str, default=None, help="fit: as of this time (ISO or epoch ms)."),
        option(
            "--calibration-end",
            type=str,
            default=None,
            help="backtest: end of the calibration period, YYYY-MM-DD (default: mid-log).",
        ),
        option(
            "--holdout-days",
            "holdout_days",
            type=int,
            multiple=True,
            help="backtest: horizon H in days, repeatable (default: RTP_CHURN_HORIZON_DAYS).",
        ),
        option(
            "--plot",
            type=str,
            default="churn-calibration.png",
            help="backtest: calibration plot PNG.",
        ),
    )
    async def churn(
        self: AppCommand,
        action: str,
        path: str | None,
        as_of: str | None,
        calibration_end: str | None,
        holdout_days: tuple[int, ...],
        plot: str,
    ) -> None:
        """Churn model: fit (refit now; workers pick it up at their next sweep) | backtest FILE
        (a CSV/JSONL purchase log of customer,time,amount: AUC, levels, lift, calibration)."""
        from stream.cli import churn as tool

        if action == "fit":
            stored = await tool.fit(settings, None if as_of is None else tool.parse_time(as_of))
            sys.stdout.write(orjson.dumps(stored, option=orjson.OPT_INDENT_2).decode() + "\n")
            return
        if action != "backtest" or path is None:
            raise SystemExit("usage: churn fit [--as-of T] | churn backtest FILE [options]")
        from stream.evaluation.churn import main as evaluate

        horizons = list(holdout_days) or [round(settings.churn.horizon_days)]
        argv = ["--log", path, "--plot", plot, "--horizons", *map(str, horizons)]
        argv += [] if calibration_end is None else ["--calibration-end", calibration_end]
        code = await asyncio.to_thread(evaluate, argv)
        if code:
            raise SystemExit(code)
        self.say(f"wrote {plot}")

    @app.command(
        argument("action", type=str),
        argument("target", type=str, required=False),
        option("--format", "fmt", type=str, default="csv", help="export: csv or jsonl."),
        option("--out", type=str, default=None, help="export: write here (default stdout)."),
        option("--page", type=int, default=1000, help="export: members per Redis call."),
        option("--epsilon", type=float, default=None, help="count: Laplace noise, this epsilon."),
        option("--report", type=str, default="default", help="count: whose budget pays."),
        option("--seed", type=int, default=None, help="count: noise seed (tests only)."),
    )
    async def audiences(
        self: AppCommand,
        action: str,
        target: str | None,
        fmt: str,
        out: str | None,
        page: int,
        epsilon: float | None,
        report: str,
        seed: int | None,
    ) -> None:
        """Audiences: apply FILE | check FILE | list | export NAME [--format csv|jsonl] |
        count NAME [--epsilon E --report R]."""
        from profiles.audiences.definitions import definitions_from_bytes
        from profiles.audiences.export import BudgetSpent, UnknownAudience
        from profiles.audiences.rules import RuleError
        from stream.cli import audiences as cli

        needs = {"apply": "FILE", "check": "FILE", "export": "NAME", "count": "NAME"}
        if action not in (*needs, "list"):
            raise SystemExit(f"unknown action {action!r}: use apply, check, list, export, count")
        if action in needs and not target:
            raise SystemExit(f"audiences {action} needs {needs[action]}")
        try:
            if action == "check":
                defs = definitions_from_bytes(Path(str(target)).read_bytes())
                self.say(f"{len(defs.audiences)} audiences: valid")
            elif action == "apply":
                self.say(await cli.apply(settings, Path(str(target))))
            elif action == "list":
                sys.stdout.write((await cli.listing(settings)).decode() + "\n")
            elif action == "export":
                if page < 1:
                    raise SystemExit("--page must be at least 1")
                stream = cli.text_out(out)
                try:
                    n = await cli.export(settings, str(target), fmt, stream, page)
                finally:
                    if stream is not sys.stdout:
                        stream.close()
                sys.stderr.write(f"exported {n} members of {target}\n")
            else:
                got = await cli.count(settings, str(target), epsilon, report, seed)
                sys.stdout.write(got.decode() + "\n")
        except (RuleError, OSError, UnknownAudience, BudgetSpent, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from None

    @app.command(option("--topic", "topics", multiple=True, help="Topic (repeatable)."))
    async def lag(self: AppCommand, topics: tuple[str, ...]) -> None:
        """Committed offset, end offset, lag and lag age per partition of the worker group."""
        from stream.cli.lag import group_lag, table

        self.say(table(await group_lag(settings, list(topics) or None)))

    @app.command(
        option("--rate", type=float, default=300.0, help="Events per second of demo traffic."),
        option("--bad-share", type=float, default=0.02, help="Share of malformed messages."),
        option("--duration", type=float, default=None, help="Stop by itself after N seconds."),
        option(
            "--format",
            "fmt",
            type=click.Choice(["ours", "segment"]),
            default="ours",
            help="Send the traffic as our events or as Segment-spec calls.",
        ),
    )
    async def demo(
        self: AppCommand, rate: float, bad_share: float, duration: float | None, fmt: str
    ) -> None:
        """Start broker, Redis, a worker and traffic, and show a live view. Ctrl-C stops all."""
        from stream.devtools.demo import run_demo

        await run_demo(settings, rate=rate, bad_share=bad_share, duration=duration, fmt=fmt)


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
