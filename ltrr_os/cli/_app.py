"""The `ltrr` command line: thin commands over the package's public API."""

from __future__ import annotations

import errno
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from typer._click import Context as ClickContext  # typer vendors click

from .. import __version__
from .._durable import replace_atomically
from .._errors import LtrrError
from ..catalog import (
    IngestReport,
    Rejection,
    SourceRow,
    build_music_catalog,
    catalog_entities,
    catalog_schema,
    editorial_judgments,
    ingest_rows,
    load_lexicon,
    read_rows,
    refresh_lexicon,
    sample_rows,
)
from ..client import LTRRClient, SearchContext
from ..config import CatalogSchema, LtrrSettings, load_schema, load_settings
from ..embedding import load_encoder
from ..evaluation import (
    NEW_ENTITIES,
    EvaluationRow,
    build_world,
    evaluate_logged,
    make_policy,
    policy_names,
    read_cisi,
    read_cranfield,
    read_qrels,
    read_queries,
    taste_vectors,
    verdict,
    write_documents,
    write_dsjson,
    write_qrels,
    write_queries,
    write_report,
)
from ..evaluation import evaluate as run_evaluation
from ..evaluation import simulate as run_simulation
from ..feedback import foreign_events
from ..learning import Learner, LearnerConfig, LearnerReport
from ..models import MODEL_KINDS, RANKER_NAME, ModelKind, ModelStore, live_ranker, train_ranker
from ..opensearch import bootstrap as apply_bootstrap
from ..opensearch import connect, opensearch_error, plan_bootstrap, run_checks
from ..pipeline import SearchPipeline, opensearch_retriever
from ..policy import DEFAULT_POLICY_NAME
from ..ranking import (
    FeatureExtractor,
    RankerReport,
    TrainConfig,
    load_logged_searches,
)
from ..strategies import StrategyContext, get_strategy, strategies

T = TypeVar("T")


class _Commands(typer.core.TyperGroup):
    """Errors a user can act on (bad input or configuration, OpenSearch unreachable or refusing,
    a file that cannot be read) become one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except LtrrError as exc:
            message = str(exc)
        except OpenSearchException as exc:
            message = str(opensearch_error(exc, state.url()))
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # typer handles a closed pipe
            message = f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc)
        err_console.print(f"[red]error:[/] {escape(message)}", markup=True)
        raise typer.Exit(2)


app = typer.Typer(
    name="ltrr",
    cls=_Commands,
    help="Learning to rank and retrieve on OpenSearch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Plain text by default: titles, ids, paths and messages are printed as they are, never read as
# markup ("[feat. DVNO]" is part of a title). Styled lines say markup=True and escape what they
# quote.
console = Console(markup=False, highlight=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)
DEFAULT_MUSIC_DIR = Path("../shared/data/music")
DEFAULT_IR_DIR = Path("../shared/data/ir")


class _State:
    config_file: Path | None = None
    index_prefix: str | None = None
    _settings: LtrrSettings | None = None
    _client: OpenSearch | None = None

    def settings(self) -> LtrrSettings:
        if self._settings is None:
            overrides = {"index_prefix": self.index_prefix} if self.index_prefix else {}
            self._settings = load_settings(self.config_file, **overrides)
        return self._settings

    def client(self) -> OpenSearch:
        if self._client is None:
            self._client = connect(self.settings())
        return self._client

    def url(self) -> str:
        """The configured OpenSearch URL, for messages ('' while the settings are invalid)."""
        return self._settings.opensearch_url if self._settings is not None else ""


state = _State()


def _progress() -> Progress:
    """The progress bar of long commands, on stderr, gone when done; tasks name their stage."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


@app.callback()
def _options(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML config file (else $LTRR_CONFIG, else ./ltrr.toml)."),
    ] = None,
    index_prefix: Annotated[
        str | None,
        typer.Option("--index-prefix", help="Prefix of every index (else the configured one)."),
    ] = None,
) -> None:
    state.config_file = config
    state.index_prefix = index_prefix
    state._settings, state._client = None, None  # a new invocation (tests run several)


@app.command()
def version() -> None:
    """Print the ltrr-os version."""
    console.print(__version__)


@app.command()
def doctor() -> None:
    """Check that OpenSearch is reachable and has every capability ltrr-os uses."""
    settings = state.settings()
    table = Table("check", "", "detail", title=f"OpenSearch at {settings.opensearch_url}")
    failed = 0
    for check in run_checks(state.client(), settings.index_prefix):
        failed += not check.ok
        table.add_row(
            check.name,
            Text("ok", style="green") if check.ok else Text("FAIL", style="red"),
            check.detail,
        )
    console.print(table)
    if failed:
        raise typer.Exit(1)


def _resolve_schema(requested: str | None) -> CatalogSchema:
    """The requested schema, which must agree with the live catalog's; else the live one."""
    try:
        live: CatalogSchema | None = catalog_schema(state.client(), state.settings())
    except LtrrError:
        live = None
    if requested is None:
        return live or load_schema("music")
    schema = load_schema(requested)
    if live is not None and live.name != schema.name:
        raise LtrrError(
            f"the catalog at {state.settings().index_name('catalog')} has schema {live.name!r}, "
            f"not {schema.name!r}; use another --index-prefix for a second catalog"
        )
    return schema


SchemaOption = Annotated[
    str | None,
    typer.Option("--schema", help="Schema name (music, documents) or TOML file."),
]


@app.command()
def bootstrap(
    schema: SchemaOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
) -> None:
    """Create or upgrade templates and indices (idempotent; upgrades reindex, nothing is lost)."""
    settings, client = state.settings(), state.client()
    catalog = _resolve_schema(schema)
    steps = plan_bootstrap(client, settings, catalog)
    if dry_run:
        for step in steps:
            console.print(f"would {step.describe()}")
        if not steps:
            console.print("nothing to do: everything is current")
        return
    with _terminated_like_interrupted():
        done = apply_bootstrap(client, settings, catalog)
    for line in done:
        console.print(Text("done ", style="green") + Text(line))
    if not done:
        console.print(f"nothing to do: schema {catalog.name!r} and every index are current")
    if client.count(index=settings.index_name("catalog"))["count"]:
        _refresh_lexicon(catalog)


@contextmanager
def _terminated_like_interrupted() -> Iterator[None]:
    """SIGTERM ends the block as Ctrl-C does (KeyboardInterrupt), so what it started is undone
    by its own cleanup rather than cut off."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _refresh_lexicon(catalog: CatalogSchema) -> None:
    with err_console.status("rebuilding the query-understanding lexicon from the catalog"):
        lexicon = refresh_lexicon(state.client(), state.settings(), catalog)
    sizes = ", ".join(f"{len(values)} {slot}" for slot, values in lexicon.slot_values.items())
    console.print(f"lexicon rebuilt from the catalog: {sizes}, {len(lexicon.vocabulary)} words")


def _music_rows(music_dir: Path) -> tuple[list[SourceRow | Rejection], int]:
    catalog = build_music_catalog(music_dir)
    rows: list[SourceRow | Rejection] = list(catalog.rejections)
    for entity in catalog.entities:
        source_file, _, line = str(entity["sources"][0]).rpartition(":")
        rows.append(SourceRow(str(music_dir / source_file), int(line), entity))
    return rows, len(catalog.entities)


def _file_rows(files: list[Path]) -> Iterator[SourceRow | Rejection]:
    for file in files:
        yield from read_rows(file)


def _print_report(report: IngestReport, show: int) -> None:
    table = Table("", "", title="ingest")
    table.add_row("rows read", str(report.read))
    for entity_type, count in sorted(report.by_entity_type.items()):
        table.add_row(f"{entity_type} entities", str(count))
    table.add_row("rejected", str(len(report.rejected)))
    table.add_row("entities/s (end to end)", f"{report.entities_per_second:.0f}")
    table.add_row("encoder sentences/s", f"{report.sentences_per_second:.0f}")
    console.print(table)
    if report.ignored_fields:
        console.print(f"ignored columns not in the schema: {', '.join(report.ignored_fields)}")
    for rejection in report.rejected[:show]:
        err_console.print(f"rejected {rejection}")
    if len(report.rejected) > show:
        err_console.print(f"... and {len(report.rejected) - show} more (see --rejections)")


QUICKSTART_PREFIX = "quickstart-"
QUICKSTART_QUERIES = [
    ("tayler love", 0),
    ("80s rock", 1),
    ("chill acoustic", 2),
    ("bohemian rhapsody", 1),
    ("songs by queen", 2),
]
"""What the quickstart searches for, and which shown result its simulated user plays."""


@app.command()
def quickstart() -> None:
    """A first look in about a minute, on any reachable OpenSearch: bootstrap, ingest the sample
    catalog shipped with ltrr-os (vectors included: nothing to encode), search, send feedback,
    let the learner learn from it, and show what changed. Its indices sit beside the
    configured ones (`<prefix>quickstart-`) unless --index-prefix is given."""
    started = time.perf_counter()
    if state.index_prefix is None:  # never the configured catalog: one beside it
        state.index_prefix = f"{state.settings().index_prefix}{QUICKSTART_PREFIX}"
        state._settings = None
    settings, client = state.settings(), state.client()
    catalog = load_schema("music")
    _resolve_schema("music")
    done = apply_bootstrap(client, settings, catalog)
    console.print(f"1. bootstrap: {len(done)} steps under the prefix {settings.index_prefix}")
    encoder = load_encoder()
    report = ingest_rows(client, settings, catalog, sample_rows(), encoder)
    refresh_lexicon(client, settings, catalog)
    console.print(
        f"2. ingest: {report.indexed} entities of the music sample in {report.seconds:.1f} s "
        f"({report.encoded} encoded: the sample carries its vectors)"
    )
    spool = settings.spool_dir / "quickstart"
    with LTRRClient(
        settings.model_copy(update={"spool_dir": spool}),
        opensearch=client,
        encoder=encoder,
        learn="embedded",
    ) as ltrr:
        console.print("3. search, and a user plays one of the first results:")
        played: dict[str, tuple[str, str, int]] = {}
        for text, choice in QUICKSTART_QUERIES:
            response = ltrr.search(text, SearchContext(user_id="quickstart-user"), limit=10)
            titles = ", ".join(r.title or r.id for r in response.results[:3])
            console.print(f"   {text!r} -> {titles}")
            if len(response.results) > choice:
                target = response.results[choice]
                played[text] = (target.id, target.title or target.id, target.rank)
                ltrr.feedback(
                    [
                        {
                            "search_id": response.search_id,
                            "action": "impression",
                            "object_id": r.id,
                            "position": r.rank,
                        }
                        for r in response.results
                    ]
                    + [
                        {
                            "search_id": response.search_id,
                            "action": "playback",
                            "object_id": target.id,
                            "position": target.rank,
                            "user_id": "quickstart-user",
                        }
                    ]
                )
        learned = ltrr.settle(force=True)
        console.print(
            f"4. learn: {learned.events} playbacks taught the memory, {learned.policy_lessons} "
            f"searches taught the policy ({', '.join(learned.published) or 'nothing published'})"
        )
        console.print("5. the same searches now: where the played result ranks")
        for text, (item, title, before) in played.items():
            response = ltrr.search(text, SearchContext(user_id="quickstart-user"), limit=10)
            now = next((r for r in response.results if r.id == item), None)
            found = (
                f"#{now.rank}, found by " + ", ".join(p.strategy for p in now.provenance)
                if now is not None
                else "not in the top 10"
            )
            console.print(f"   {text!r}: {title}: was #{before}, now {found}")
    console.print(
        f"done in {time.perf_counter() - started:.0f} s. Next: `ltrr --index-prefix "
        f"{settings.index_prefix} search QUERY`, `ltrr learn`, or the full catalog with "
        "`ltrr ingest --music-dir DIR` (see the README)."
    )


def _aware(moment: datetime | None) -> datetime | None:
    """A time given without a zone is taken as UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def ingest(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="CSV or JSON Lines files; none: build the music catalog."),
    ] = None,
    schema: SchemaOption = None,
    music_dir: Annotated[
        Path, typer.Option("--music-dir", help="The five music CSV files.")
    ] = DEFAULT_MUSIC_DIR,
    encoder: Annotated[
        str | None, typer.Option("--encoder", help="'minilm' or module:attribute.")
    ] = None,
    rejections: Annotated[
        Path | None, typer.Option("--rejections", help="Write every rejected row here (JSONL).")
    ] = None,
    show: Annotated[int, typer.Option("--show", help="Rejections to print.")] = 20,
    added_at: Annotated[
        datetime | None,
        typer.Option(
            "--added-at",
            help="When new entities joined the catalog (default: now); a first load of an "
            "established catalog may give a past date, so that only later additions count as "
            "fresh. Entities already in the catalog keep theirs.",
        ),
    ] = None,
) -> None:
    """Ingest catalog entities; exit 1 when any row was rejected (all others are ingested)."""
    settings, client = state.settings(), state.client()
    if files:
        catalog = _resolve_schema(schema)
        rows: list[SourceRow | Rejection] | Iterator[SourceRow | Rejection] = _file_rows(files)
        total: int | None = None
    else:
        catalog = _resolve_schema(schema or "music")
        if catalog.name != "music":
            raise LtrrError("without files, ingest builds the music catalog; pass files to ingest")
        rows, _ = _music_rows(music_dir)
        total = len(rows)
    catalog_schema(client, settings)  # fails clearly when bootstrap has not run
    with _progress() as progress:
        task = progress.add_task("ingest", total=total)
        report = ingest_rows(
            client,
            settings,
            catalog,
            rows,
            load_encoder(encoder),
            on_progress=lambda read: progress.update(task, completed=read),
            added_at=_aware(added_at),
        )
    _print_report(report, show)
    _refresh_lexicon(catalog)
    if rejections is not None:
        with rejections.open("w", encoding="utf-8") as out:
            for rejection in report.rejected:
                out.write(rejection.model_dump_json() + "\n")
    if report.rejected:
        raise typer.Exit(1)


@app.command()
def evaluate(
    out: Annotated[Path, typer.Option("--out", help="Directory for metrics.json.")],
    queries: Annotated[Path | None, typer.Option("--queries", help="TSV: query id, text.")] = None,
    qrels: Annotated[
        Path | None, typer.Option("--qrels", help="TREC qrels: qid 0 doc grade.")
    ] = None,
    strategy: Annotated[
        list[str] | None, typer.Option("--strategy", help="Strategy to evaluate (repeatable).")
    ] = None,
    combination: Annotated[
        list[str] | None,
        typer.Option("--combination", help="Strategies fused together, e.g. lexical+vector."),
    ] = None,
    size: Annotated[
        int, typer.Option("--size", min=1, max=1000, help="Candidates per strategy.")
    ] = 200,
    logged: Annotated[
        bool,
        typer.Option("--logged", help="Evaluate the rankers on held-out logged searches instead."),
    ] = False,
    holdout: Annotated[
        float,
        typer.Option("--holdout", min=0.01, max=1.0, help="With --logged: newest share used."),
    ] = 0.2,
) -> None:
    """Recall, nDCG and MRR of strategies, combinations and their union on a judged query set,
    and of the union ranked by the fused score and by the learned ranker (if one is saved).
    With --logged: nDCG and MRR of the logged order, the fused ranking and the learned ranker on
    the newest logged searches, labelled by engagement."""
    settings, client = state.settings(), state.client()
    catalog = catalog_schema(client, settings)
    extractor = FeatureExtractor(catalog)
    learned = live_ranker(ModelStore(client, settings), extractor)
    if logged:
        data, _ = load_logged_searches(client, settings, extractor.schema)
        logged_report = evaluate_logged(data, holdout, learned)
        _print_rows(
            out,
            logged_report,
            logged_report.rows,
            f"{logged_report.searches} held-out logged searches (the newest {holdout:.0%}, "
            f"since {logged_report.since:%Y-%m-%d %H:%M}), their shown results reordered",
        )
        if logged_report.seen_in_training:
            err_console.print(
                Text("note: ", style="yellow")
                + Text(
                    f"{learned.name if learned else 'the ranker'} may have trained on "
                    f"{logged_report.seen_in_training} of these searches; train with --holdout "
                    f"{holdout} for a clean comparison"
                )
            )
        return
    if queries is None or qrels is None:
        raise LtrrError("evaluate needs --queries and --qrels (a judged query set), or --logged")
    # A judged query set has no users: the personal strategies would have no row to show.
    names = strategy or [n for n, s in strategies().items() if s.source_type != "personal"]
    for name in names:
        get_strategy(name)
    combos = [c.split("+") for c in combination or []]
    for combo in combos:
        for name in combo:
            get_strategy(name)
    query_list, judgments = read_queries(queries), read_qrels(qrels)
    pipeline = _pipeline(settings, client, catalog)
    with _progress() as progress:
        task = progress.add_task("evaluate", total=len(query_list))
        report = run_evaluation(
            pipeline,
            client,
            query_list,
            judgments,
            names,
            combos,
            size,
            on_progress=lambda done: progress.update(task, completed=done),
            rankers=[pipeline.fused, *([learned] if learned else [])],
            out=out,
        )
    truncated = (
        f", {report.truncated_queries} cut to {settings.max_query_chars} characters"
        if report.truncated_queries
        else ""
    )
    _print_rows(
        out,
        report,
        report.rows,
        f"{report.judged_queries} judged queries of {report.queries}{truncated}, size "
        f"{report.size}, round trip p50 {report.round_trip_ms['p50']} ms",
    )
    console.print(f"wrote the TREC runs to {out / 'runs'!s} and per_query.jsonl")


PRINTED = {
    "recall@10": "R@10",
    "recall@100": "R@100",
    "recall@all": "R@all",
    "ndcg@10": "nDCG@10",
    "map": "MAP",
    "mrr": "MRR",
}
"""The columns the table prints (every metric is in metrics.json): they fit 80 columns."""


def _print_rows(out: Path, report: BaseModel, rows: list[EvaluationRow], title: str) -> None:
    """Write the report to out/metrics.json and print its rows as a table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    metrics = [m for m in PRINTED if m in rows[0].metrics]
    table = Table(title=title, padding=(0, 1))
    table.add_column("strategy", no_wrap=True)  # names are what the table is read by
    for metric in metrics:
        table.add_column(PRINTED[metric], justify="right", no_wrap=True)
    table.add_column("cands", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row.name,
            *(f"{row.metrics[m]:.3f}" for m in metrics),
            f"{row.mean_candidates:.0f}",
        )
    console.print(table)
    console.print(f"wrote {out / 'metrics.json'!s} (every metric)")


def _pipeline(settings: LtrrSettings, client: OpenSearch, catalog: CatalogSchema) -> SearchPipeline:
    """The serving pipeline over this catalog, for evaluate and simulate."""
    context = StrategyContext(
        settings=settings,
        schema=catalog,
        encoder=load_encoder(),
        timeout_ms=settings.search_timeout_ms,
        max_query_chars=settings.max_query_chars,
    )
    return SearchPipeline(
        catalog,
        load_lexicon(client, settings),
        context,
        opensearch_retriever(client),
        budget=settings.candidate_budget,
    )


def _judged_intents(
    catalog: CatalogSchema, queries: Path | None, qrels: Path | None, music_dir: Path
) -> list[tuple[str, frozenset[str]]]:
    """(query text, relevant ids) for the topical users: the judged set given, else the
    editorial playlists of the music catalog, else none."""
    if (queries is None) != (qrels is None):
        raise LtrrError("--queries and --qrels go together")
    if queries is not None and qrels is not None:
        judgments = read_qrels(qrels)
        return [
            (text, frozenset(d for d, grade in judgments.get(qid, {}).items() if grade > 0))
            for qid, text in read_queries(queries)
        ]
    if catalog.name != "music" or not music_dir.is_dir():
        return []
    editorial, editorial_qrels, _ = editorial_judgments(music_dir)
    relevant: dict[str, set[str]] = {}
    for qid, entity, _ in editorial_qrels:
        relevant.setdefault(qid, set()).add(entity)
    return [(text, frozenset(relevant.get(qid, ()))) for qid, text in editorial]


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Directory for the report.")],
    searches: Annotated[
        int, typer.Option("--searches", min=100, max=1_000_000, help="Searches in the stream.")
    ] = 20_000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seeds the stream, the users and the policies.")
    ] = 7,
    policies: Annotated[
        list[str] | None,
        typer.Option("--policies", help="Policies to compare (repeatable); default: all."),
    ] = None,
    queries: Annotated[
        Path | None, typer.Option("--queries", help="Judged queries (TSV) the users pursue.")
    ] = None,
    qrels: Annotated[Path | None, typer.Option("--qrels", help="Their TREC qrels.")] = None,
    users: Annotated[
        int, typer.Option("--users", min=1, help="Simulated users (fewer: more history each).")
    ] = 500,
    judged_only: Annotated[
        bool,
        typer.Option("--judged-only", help="Users pursue only the judged queries."),
    ] = False,
    music_dir: Annotated[
        Path, typer.Option("--music-dir", help="Editorial playlists, without --queries.")
    ] = DEFAULT_MUSIC_DIR,
    budget: Annotated[
        int | None,
        typer.Option("--budget", min=1, max=5000, help="Candidate budget (default: settings)."),
    ] = None,
    ranker_every: Annotated[
        int, typer.Option("--ranker-every", min=100, help="Searches between ranker trainings.")
    ] = 2000,
    cost_per_candidate: Annotated[
        float | None,
        typer.Option(
            "--cost-per-candidate",
            min=0.0,
            max=1.0,
            help="What the learned policies pay per candidate, in units of one search's "
            "recall (default: settings, 0.002); also the regret's.",
        ),
    ] = None,
    dsjson: Annotated[
        Path | None,
        typer.Option("--dsjson", help="Also write LTR&R's decisions as VW DSJSON here."),
    ] = None,
) -> None:
    """Simulated users search the real catalog; every policy serves the same stream side by
    side through the serving pipeline, and learns from its own traffic only. Writes
    summary.json, report.md and plots. The memory it writes (each policy its own namespace) is
    removed when it ends; the catalog's own memory is never touched."""
    settings, client = state.settings(), state.client()
    names = policies or policy_names()
    for name in names:
        make_policy(name, seed)
    catalog = catalog_schema(client, settings)
    judged = _judged_intents(catalog, queries, qrels, music_dir)
    if judged_only and not judged:
        raise LtrrError("--judged-only needs judged queries (--queries and --qrels)")
    entities = list(catalog_entities(client, settings, catalog))
    world = build_world(
        entities,
        judged,
        seed=seed,
        mix={"topical": 1.0} if judged_only else None,
        users=users,
        vectors=None if judged_only else taste_vectors(client, settings, entities),
        new_entities=0 if judged_only else NEW_ENTITIES,
    )
    if budget is not None:
        settings = settings.model_copy(update={"candidate_budget": budget})
    if cost_per_candidate is not None:
        settings = settings.model_copy(update={"cost_per_candidate": cost_per_candidate})
    pipeline = _pipeline(settings, client, catalog)
    with _progress() as progress:
        task = progress.add_task("simulate", total=searches)

        def advance(phase: str, done: int, total: int) -> None:
            progress.update(task, description=phase, completed=done, total=total)

        with _terminated_like_interrupted():
            summary, simulation = run_simulation(
                client,
                pipeline,
                world,
                names,
                searches,
                seed=seed,
                ranker_every=ranker_every,
                on_progress=advance,
            )
    write_report(summary, simulation.runs, out)
    if dsjson is not None:
        lines = write_dsjson(simulation.logged, dsjson, simulation.cost_per_candidate)
        console.print(f"wrote {lines} decisions as DSJSON to {dsjson!s}")
    console.print(verdict(summary), soft_wrap=True)
    table = Table(
        title=f"{summary.parameters['searches']} searches, seed {seed}, {summary.seconds:.0f} s; "
        "success@10: whole run, last 20%, and last 20% ranked by the fused score"
    )
    table.add_column("policy", no_wrap=True)
    for header in ("S@10", "last", "fused", "recall", "cands", "p50 ms", "p95 ms", "regret"):
        table.add_column(header, justify="right")
    for name, policy in summary.policies.items():
        whole, tail = policy.whole_run, policy.last_20_percent
        table.add_row(
            name,
            f"{whole.success_at_10:.3f}",
            f"{tail.success_at_10:.3f}",
            f"{policy.retrieval_alone_last_20_percent.success_at_10:.3f}",
            f"{whole.candidate_recall:.3f}",
            f"{whole.candidates_per_query:.0f}",
            str(whole.latency_ms_p50),
            str(whole.latency_ms_p95),
            f"{whole.cumulative_regret:.0f}",
        )
    console.print(table)
    console.print(f"wrote {out / 'summary.json'!s}, report.md and the plots")
    if not summary.complete:
        raise LtrrError(f"the simulation stopped early: {summary.error} (partial report written)")


@app.command("train-ranker")
def train_ranker_command(
    min_searches: Annotated[
        int, typer.Option("--min-searches", min=1, help="Engaged searches needed to train.")
    ] = 50,
    holdout: Annotated[
        float,
        typer.Option(
            "--holdout", min=0.0, max=0.9, help="Newest share left out, for evaluate --logged."
        ),
    ] = 0.0,
    validation: Annotated[
        float,
        typer.Option("--validation", min=0.05, max=0.5, help="Share of searches for validation."),
    ] = 0.2,
    position_aware: Annotated[
        bool,
        typer.Option(
            "--position-aware/--no-position-aware",
            help="Correct the clicks' position bias (Unbiased LambdaMART).",
        ),
    ] = True,
) -> None:
    """Train a LambdaMART ranker on the logged searches (UBI) and store it as a new version;
    it is promoted (and serving processes switch to it within `model_reload_s`) only if it
    ranks the held-out newest searches at least as well as the live ranking."""
    settings, client = state.settings(), state.client()
    config = TrainConfig(
        min_searches=min_searches,
        holdout=holdout,
        validation=validation,
        position_aware=position_aware,
    )
    with err_console.status("training the ranker"):
        record, decision, counts = train_ranker(client, settings, config)
    report = RankerReport.model_validate(
        {k: v for k, v in record.metrics.items() if k in RankerReport.model_fields}
    )
    console.print(
        f"{counts.searches} logged searches: {counts.groups} with impressions and this catalog's "
        f"features, {counts.engaged_groups} engaged; trained on {report.train_searches}, "
        f"validated on {report.validation_searches}, held out {report.held_out_searches} "
        f"({report.rows} shown results)"
    )
    table = Table("ranking", "nDCG@10", "MRR", title="validation searches")
    for name, metrics in report.validation.items():
        table.add_row(name, f"{metrics['ndcg@10']:.3f}", f"{metrics['mrr']:.3f}")
    console.print(table)
    top = ", ".join(f"{name} {gain:.0f}" for name, gain in list(report.importance_gain.items())[:8])
    console.print(f"top features by gain: {top}")
    verdict = (
        Text("promoted", style="green")
        if decision.promote
        else Text("not promoted", style="yellow")
    )
    console.print(
        Text(
            f"stored ranker {record.name} v{record.version} ({report.best_iteration} trees, "
            f"{report.training_seconds:.1f} s): "
        )
        + verdict
        + Text(f", {decision.reason}")
    )


def _client() -> LTRRClient:
    return LTRRClient(state.settings(), opensearch=state.client())


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    user: Annotated[
        str | None, typer.Option("--user", help="User id (for personal context).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Results to show.")] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full response as JSON.")
    ] = False,
) -> None:
    """Search with learned retrieval: decision, results with provenance, timings."""
    try:
        context = SearchContext(user_id=user)
    except ValidationError:
        raise LtrrError("--user must be 1-128 letters, digits or ._:@/+=-") from None
    client = _client()
    try:
        response = client.search(query, context, limit=limit)
    finally:
        client.close()
    if as_json:
        print(response.model_dump_json(indent=2))
        return
    features = response.understanding.features
    best = response.understanding.readings[0]
    slots = ", ".join(f"{s.slot}={s.value}" for s in best.slots) or "none"
    console.print(
        f"search {response.search_id}: {features.query_type} query ({features.language}), "
        f"slots: {slots}"
    )
    plan = ", ".join(
        f"{c.strategy} {c.size} (p={c.probability:.2f})" for c in response.decision.choices
    )
    console.print(
        f"policy {response.decision.policy}: {plan or 'nothing to run'}; "
        f"{response.candidates} candidates, ranked by {response.ranker}"
    )
    table = Table("#", "title", "type", "id", "found by")
    for result in response.results:
        found = ", ".join(
            f"{p.strategy}#{p.rank}" + (f" (from {p.via[0]})" if p.via else "")
            for p in result.provenance
        )
        table.add_row(
            str(result.rank), result.title or "", result.entity_type or "", result.id, found
        )
    console.print(table)
    for strategy, error in response.errors.items():
        err_console.print(Text("partial: ", style="yellow") + Text(f"{strategy} failed: {error}"))
    console.print(" ".join(f"{k} {v:.1f} ms" for k, v in response.timings_ms.items()))


FOREIGN_BATCH = 1000


@app.command()
def feedback(
    events: Annotated[
        Path | None,
        typer.Argument(
            help="JSON Lines of events ('-' for stdin), in ltrr-os' form or as UBI events."
        ),
    ] = None,
    from_index: Annotated[
        str | None,
        typer.Option(
            "--from-index",
            help="Read the UBI events another tool wrote to this index (e.g. the UBI plugin's "
            "ubi_events) instead; importing them again stores nothing twice.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="With --from-index: only events newer than this (2h, 7d)."),
    ] = None,
) -> None:
    """Record feedback events (impression, click, add_to_favorites, playback...). UBI events
    are taken as they are: their query_id must be the search_id of an ltrr-os search."""
    if (events is None) == (from_index is None):
        raise LtrrError("give either a file of events or --from-index, not both or neither")
    if since is not None and from_index is None:
        raise LtrrError("--since goes with --from-index")
    # (number, event): rejections name the input line, or the event's place in the index
    batches: Iterable[list[tuple[int, Any]]]
    bad: list[tuple[int, str]] = []
    unit = "line" if events is not None else "event"
    if events is not None:
        data = sys.stdin.buffer.read() if str(events) == "-" else events.read_bytes()
        parsed: list[tuple[int, Any]] = []
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed.append((number, json.loads(line)))
            except UnicodeDecodeError:
                bad.append((number, f"line {number}: not valid UTF-8"))
            except (ValueError, RecursionError) as exc:
                bad.append((number, f"line {number}: invalid JSON: {str(exc)[:200]}"))
        batches = [parsed]
    else:
        assert from_index is not None
        start = datetime.now(UTC) - _duration(since) if since else None
        found = foreign_events(state.client(), from_index, start)
        batches = _chunks(enumerate(found, start=1), FOREIGN_BATCH)
    accepted = duplicates = 0
    problems: list[tuple[int, str]] = list(bad)
    client = _client()
    try:
        for batch in batches:
            receipt = client.feedback([event for _, event in batch])
            accepted, duplicates = accepted + receipt.accepted, duplicates + receipt.duplicates
            for rejection in receipt.rejected:
                number = batch[rejection.index][0]
                problems.append((number, f"{unit} {number}: {rejection.reason}"))
    finally:
        client.close()
    console.print(
        f"accepted {accepted}, duplicates {duplicates}, rejected {len(problems)}; the learner "
        "(ltrr learn) learns from them"
    )
    for _, problem in sorted(problems):
        err_console.print(f"rejected {problem}")
    if problems:
        raise typer.Exit(1)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _duration(text: str) -> timedelta:
    """'90s', '30m', '2h' or '7d'."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not found:
        raise LtrrError(f"not a duration: {text!r} (say 90s, 30m, 2h or 7d)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[found.group(2)]
    return timedelta(**{unit: float(found.group(1))})


def _print_learning(report: LearnerReport) -> None:
    console.print(
        f"{report.batches} batches: {report.events} engagements applied to the memory "
        f"({report.memory_entities} entity updates, {report.unshown} with items never shown, "
        f"{report.capped} capped, {report.missing_entities} entities missing); "
        f"{report.settled} searches settled, {report.policy_lessons} taught the policy, "
        f"{report.not_shown} never shown",
        soft_wrap=True,
    )
    for published in report.published:
        console.print(f"published {published}")


@app.command("learn")
def learn_command(
    once: Annotated[bool, typer.Option("--once", help="Catch up with the log, then exit.")] = False,
    settle_all: Annotated[
        bool,
        typer.Option(
            "--settle-all",
            help="With --once: settle every search read, without waiting for its reward window.",
        ),
    ] = False,
    lag: Annotated[
        float,
        typer.Option("--lag", min=0.0, max=600.0, help="Seconds behind the cluster's clock."),
    ] = 1.0,
    poll: Annotated[
        float, typer.Option("--poll", min=0.05, max=60.0, help="Seconds between steps.")
    ] = 0.5,
    lease: Annotated[
        float,
        typer.Option(
            "--lease", min=1.0, max=3600.0, help="Seconds a silent learner's lease lasts."
        ),
    ] = 30.0,
) -> None:
    """The learner: read the UBI logs and write what they teach (memory, profiles, policy).
    Runs until interrupted (another learner running: waits as standby); --once catches up and
    exits."""
    settings, client = state.settings(), state.client()
    learner = Learner(client, settings, config=LearnerConfig(lag_s=lag, poll_s=poll, lease_s=lease))
    if once:
        with err_console.status("learning from the log"):
            report = learner.run_once(settle_all=settle_all)
        _print_learning(report)
        return
    if settle_all:
        raise LtrrError("--settle-all goes with --once")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(
        f"learning from {settings.index_name('ubi_queries')} and "
        f"{settings.index_name('ubi_events')}; Ctrl-C stops"
    )

    def report_step(step: LearnerReport) -> None:
        if step.events or step.policy_lessons or step.published:
            _print_learning(step)

    try:
        learner.run(stop, on_step=report_step)
    except KeyboardInterrupt:
        stop.set()
        learner.stop()


@app.command("replay")
def replay_command(
    settle_all: Annotated[
        bool,
        typer.Option(
            "--settle-all",
            help="Settle every search in the log, the newest too, without waiting for its "
            "reward window.",
        ),
    ] = False,
) -> None:
    """Rebuild the Q2E memory and the user profiles from the UBI log alone, and a policy:
    promoted if the policy gate finds it not worse than the live one on the newest logged
    decisions, else stored as a candidate (`ltrr models promote policy N` overrules the gate).
    Stop the learner first: replay takes its lease."""
    settings, client = state.settings(), state.client()
    learner = Learner(client, settings)
    with err_console.status("replaying the log"):
        report = learner.rebuild(catalog_schema(client, settings), settle_all=settle_all)
    _print_learning(report)


models_app = typer.Typer(help="Learned model versions: list, promote, roll back, export.")
app.add_typer(models_app, name="models")
KindArgument = Annotated[str, typer.Argument(help="policy or ranker")]


def _kind(kind: str) -> ModelKind:
    if kind not in MODEL_KINDS:
        raise LtrrError(f"unknown model kind {kind!r}: expected policy or ranker")
    return kind


def _model_name(kind: ModelKind) -> str:
    return DEFAULT_POLICY_NAME if kind == "policy" else RANKER_NAME


@models_app.command("list")
def models_list(
    kind: Annotated[str | None, typer.Option("--kind", help="policy or ranker")] = None,
) -> None:
    """Stored versions, newest first, and which one is live."""
    store = ModelStore(state.client(), state.settings())
    live = {
        k: (pointer.version if (pointer := store.pointer(k, _model_name(k))) else None)
        for k in MODEL_KINDS
    }
    table = Table("kind", "version", "status", "live", "created", "trained by", "reason")
    for record in store.versions(_kind(kind) if kind else None):
        table.add_row(
            record.kind,
            f"{record.name} v{record.version}",
            record.status,
            "yes" if live.get(record.kind) == record.version else "",
            f"{record.created_at:%Y-%m-%d %H:%M:%S}",
            record.trained_by,
            record.reason,
        )
    console.print(table)


@models_app.command("promote")
def models_promote(
    kind: KindArgument,
    version: Annotated[int, typer.Argument(help="The version to serve.", min=1)],
) -> None:
    """Serve a stored version now (whatever the gate said of it)."""
    model_kind = _kind(kind)
    store = ModelStore(state.client(), state.settings())
    record = store.promote(model_kind, _model_name(model_kind), version, "promoted by an operator")
    console.print(f"{record.label} is live")


@models_app.command("rollback")
def models_rollback(kind: KindArgument) -> None:
    """Serve the version promoted before the live one."""
    model_kind = _kind(kind)
    store = ModelStore(state.client(), state.settings())
    record = store.rollback(model_kind, _model_name(model_kind), "rolled back by an operator")
    console.print(f"{record.label} is live again")


@models_app.command("export")
def models_export(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory to write the live versions to (model_dir)."),
    ] = None,
) -> None:
    """Write the live policy and ranker to a directory (a copy: servers load from OpenSearch)."""
    settings, client = state.settings(), state.client()
    out = out or settings.model_dir
    store = ModelStore(client, settings)
    for kind in MODEL_KINDS:
        pointer = store.pointer(kind, _model_name(kind))
        if pointer is None:
            console.print(f"no live {kind}")
            continue
        record, blob = store.load(kind, _model_name(kind), pointer.version)
        path = out / f"{kind}-{record.name}-v{record.version}.bin"
        out.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, blob)  # a full disk leaves no half model behind
        console.print(f"wrote {path!s} ({record.size_bytes} bytes, sha256 {record.sha256})")


datasets_app = typer.Typer(help="Judged query sets and documents from the shared data.")
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("convert")
def datasets_convert(
    name: Annotated[str, typer.Argument(help="cranfield, cisi or editorial")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write into.")],
    source: Annotated[
        Path | None, typer.Option("--source", help="Where the collection's files are.")
    ] = None,
) -> None:
    """Write queries.tsv, qrels.txt (TREC) and, for document collections, documents.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    if name in ("cranfield", "cisi"):
        reader = read_cranfield if name == "cranfield" else read_cisi
        collection = reader(source or DEFAULT_IR_DIR / name)
        queries, qrels = collection.queries, collection.qrels
        documents = write_documents(out / "documents.jsonl", collection.documents)
        console.print(f"wrote {documents} documents to {out / 'documents.jsonl'}")
    elif name == "editorial":
        queries, qrels, problems = editorial_judgments(source or DEFAULT_MUSIC_DIR)
        for problem in problems:
            err_console.print(f"skipped {problem}")
    else:
        raise LtrrError(f"unknown collection {name!r}: expected cranfield, cisi or editorial")
    written_queries = write_queries(out / "queries.tsv", queries)
    written_qrels = write_qrels(out / "qrels.txt", qrels)
    console.print(f"wrote {written_queries} queries and {written_qrels} judgments to {out}")


def main() -> None:
    """Console entry point (errors: see _Commands)."""
    app()
