"""The `patchling` command: edit, apply, context, stats, eval, serve, worker, prune, setup.

Exit codes: 0 success (an edit verified or unverified, a patch applied, an
eval run), 1 the work failed (every tier failed, a patch did not apply, no
tier could be evaluated), 2 bad input (not a
directory or git work tree, empty instruction, unreadable patch file).

stdout carries only the report (text or --json); progress, warnings and every
library's log go to stderr. Records and caches live in the user's data and
cache directories, never in the repository worked on (see
config.cli_data_dirs).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import pygit2
import typer
from rich.console import Console

from bot.config import DataDirs, Settings, Tier, cli_data_dirs, load_settings

if TYPE_CHECKING:
    from bot.records import RecordStore

app = typer.Typer(
    name="patchling",
    help="Turn an instruction into a tested change, written by small models first.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

RepoOption = Annotated[Path, typer.Option("--repo", metavar="DIR", help="The repository's work tree.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", metavar="FILE", help="Settings file (replaces patchling.toml).", dir_okay=False),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        metavar="DIR",
        help="Where records and caches live (default: PATCHLING_DATA_DIR, else the user's"
        " data and cache directories).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log more on stderr, model prompts and replies included.")
]
InstructionArgument = Annotated[
    str, typer.Argument(metavar="INSTRUCTION", help="What to change, in plain words.", show_default=False)
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"patchling {importlib.metadata.version('patchling')}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True),
    ] = False,
) -> None:
    """Turn an instruction into a tested change, written by small models first."""


def setup_logging(verbose: bool) -> None:
    """Every log to stderr. BAML reads BAML_LOG at each call: --verbose shows
    its prompts and replies; otherwise bot.models keeps it quiet."""
    if verbose:
        os.environ["BAML_LOG"] = "info"
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )


@contextlib.contextmanager
def report_only_stdout() -> Iterator[None]:
    """While the work runs, file descriptor 1 points at stderr: BAML's log is
    written by its Rust core straight to fd 1, out of Python logging's reach,
    and would otherwise land in the middle of the report (or the JSON)."""
    try:
        is_fd_1 = sys.stdout.fileno() == 1
    except (AttributeError, io.UnsupportedOperation, ValueError):
        is_fd_1 = False  # stdout captured in process: nothing reaches fd 1 through it
    if not is_fd_1:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


ProtectedOption = Annotated[
    list[str] | None,
    typer.Option(
        "--protected",
        metavar="GLOB",
        help="Paths never to change (repeatable); .git/ and .github/ always are.",
    ),
]
AllowWorkflowsOption = Annotated[
    bool,
    typer.Option(
        "--allow-workflows",
        help="Let the change touch .github/workflows/ (the rest of .github/ stays off).",
    ),
]


def _err() -> Console:
    return Console(stderr=True)


def _bad_input(message: str) -> NoReturn:
    _err().print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _settings(config: Path | None) -> Settings:
    if config is not None and not config.is_file():
        _bad_input(f"no such settings file: {config}")
    try:
        return load_settings(config)
    except Exception as exc:  # pydantic's messages say what is wrong
        _bad_input(f"cannot read the settings: {exc}")


def _work_tree(repo: Path, *, git: bool = True) -> Path:
    """The one check (and wording) of --repo for every command. `context` also
    reads plain directories; `edit` and `apply` change files, so they need git
    (its state is how a user sees and undoes a change)."""
    if not repo.exists():
        _bad_input(f"--repo {repo}: no such directory")
    if not repo.is_dir():
        _bad_input(f"--repo {repo}: not a directory")
    if git and pygit2.discover_repository(str(repo)) is None:
        _bad_input(f"--repo {repo}: not a git work tree")
    return repo.resolve()


def _data_dirs(settings: Settings, data_dir: Path | None) -> DataDirs:
    dirs = cli_data_dirs(settings, data_dir)
    for path in (dirs.data, dirs.cache):
        if path.exists() and not path.is_dir():
            _bad_input(f"--data-dir {path}: not a directory")
    return dirs


def _instruction(text: str) -> str:
    if not text.strip():
        _bad_input("the instruction is empty")
    return text.strip()


def _pick_tiers(settings: Settings, names: list[str] | None) -> list[Tier]:
    if not names:
        return list(settings.tiers)
    by_name = {t.name: t for t in settings.tiers}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        _bad_input(f"unknown tier {', '.join(unknown)} (configured: {', '.join(by_name) or 'none'})")
    return [by_name[n] for n in names]


@app.command()
def edit(
    instruction: InstructionArgument,
    repo: RepoOption = Path("."),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the change; write nothing.")] = False,
    json_output: JsonOption = False,
    config: ConfigOption = None,
    tier: Annotated[
        list[str] | None,
        typer.Option("--tier", metavar="NAME", help="Use only these tiers, in this order (repeatable)."),
    ] = None,
    test_command: Annotated[
        str | None, typer.Option("--test-command", metavar="COMMAND", help="Overrides the settings.")
    ] = None,
    setup_command: Annotated[
        str | None, typer.Option("--setup-command", metavar="COMMAND", help="Run once before tests.")
    ] = None,
    protected: ProtectedOption = None,
    allow_workflows: AllowWorkflowsOption = False,
    write_test: Annotated[
        bool,
        typer.Option(
            "--write-test",
            help="Each tier first writes a test that must fail before its change and pass after.",
        ),
    ] = False,
    data_dir: DataDirOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Make a change with the smallest tier that gets it right."""
    from bot.engine import EditRequest, EditResult, run_edit
    from bot.progress import ProgressFn
    from bot.records import RecordStore
    from bot.report import ProgressReporter, render_result

    setup_logging(verbose)
    root = _work_tree(repo)
    text = _instruction(instruction)
    settings = _settings(config)
    tiers = _pick_tiers(settings, tier)
    dirs = _data_dirs(settings, data_dir)
    request = EditRequest(
        root,
        text,
        protected_paths=protected or (),
        allow_workflows=allow_workflows,
        caps=settings.caps,
        test_command=test_command or settings.test_command,
        setup_command=setup_command,
        test_timeout_s=settings.test_timeout_s,
        sandbox=settings.make_sandbox(),
        dry_run=dry_run,
        write_test=write_test,
        data_dir=dirs.cache,
    )
    # A dry run is recorded apart: it never ran the tests, so it proves less.
    records = RecordStore(dirs.records, dry_run=dry_run, source="cli")
    err = _err()

    async def go(on_progress: ProgressFn | None) -> EditResult:
        # Tiers named with --tier are tried as given; otherwise the router orders them.
        routing = settings.routing if not tier else None
        return await run_edit(request, tiers=tiers, records=records, on_progress=on_progress, routing=routing)

    try:
        with report_only_stdout():
            if json_output:
                result = asyncio.run(go(None))
            else:
                with ProgressReporter(err) as progress:
                    result = asyncio.run(go(progress))
    except ValueError as exc:
        _bad_input(str(exc))
    if json_output:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        render_result(result, Console())
    raise typer.Exit(EXIT_FAILED if result.status == "failed" else EXIT_OK)


@app.command("apply")
def apply_patch(
    patchfile: Annotated[
        str,
        typer.Argument(
            metavar="PATCHFILE", help="A model reply or patch; '-' reads stdin.", show_default=False
        ),
    ],
    repo: RepoOption = Path("."),
    config: ConfigOption = None,
    protected: ProtectedOption = None,
    allow_workflows: AllowWorkflowsOption = False,
) -> None:
    r"""Apply a patch in any format Patchling reads (diff, search/replace, whole file).
    Protected paths, binary content and files over the size cap (`\[caps]` in the
    settings) are refused, as for `edit`."""
    from bot.apply import ApplyError, apply_edit

    root = _work_tree(repo)
    try:
        text = sys.stdin.read() if patchfile == "-" else Path(patchfile).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _bad_input(f"cannot read {patchfile}: {exc}")
    if not text.strip():
        _bad_input(f"{patchfile} is empty")
    err = _err()
    try:
        changed = apply_edit(
            root,
            text,
            caps=_settings(config).caps,
            protected=protected or (),
            allow_workflows=allow_workflows,
        )
    except ApplyError as exc:
        where = " ".join(
            part
            for part in (
                f"in {exc.path}" if exc.path else "",
                f"(block {exc.block})" if exc.block is not None else "",
            )
            if part
        )
        err.print(
            f"[bold red]not applied{' ' + where if where else ''}:[/bold red] {exc.message}", highlight=False
        )
        if exc.nearest:
            err.print(f"nearest match in {exc.path or 'the file'}:", highlight=False)
            err.print(exc.nearest, highlight=False, markup=False)
        err.print("nothing was written", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except (OSError, ValueError) as exc:
        err.print(f"[bold red]not applied:[/bold red] {exc}", highlight=False)
        err.print("nothing was written", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    for path in sorted(changed):
        typer.echo(f"applied: {path}")
    raise typer.Exit(EXIT_OK)


@app.command()
def context(
    instruction: InstructionArgument,
    budget: Annotated[
        int, typer.Option("--budget", metavar="TOKENS", help="Token budget for the selection.")
    ],
    repo: RepoOption = Path("."),
    json_output: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show which files (and how much of each) a model would see."""
    from bot.context import select_context

    root = _work_tree(repo, git=False)
    text = _instruction(instruction)
    if budget < 0:
        _bad_input("the budget must be zero or more tokens")
    # The same index cache as `edit`'s (the engine keeps it under cache/index).
    cache_dir = _data_dirs(_settings(config), data_dir).cache / "index"
    selected = select_context(root, text, budget, cache_dir=cache_dir)
    if json_output:
        sys.stdout.write(json.dumps(selected.to_json(), indent=2) + "\n")
    else:
        # Imported here: the report pulls in the engine and the model clients, which JSON output never needs.
        from bot.report import render_context

        render_context(selected, Console())


@app.command()
def stats(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
    coverage: Annotated[
        bool, typer.Option("--coverage", help="With --json: print the routing coverage instead.")
    ] = False,
) -> None:
    """Attempts per tier: how often each solved the task, at what cost; and
    the routing coverage (where each kind of request starts)."""
    from bot.records import RecordStore
    from bot.report import render_coverage, render_stats

    settings = _settings(config)
    path = _data_dirs(settings, data_dir).records
    store = RecordStore(path) if path.exists() else None
    rows = store.summary() if store is not None else []
    if json_output:
        data = _coverage(settings, store) if coverage else [r.to_json() for r in rows]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    console = Console()
    render_stats(rows, console)
    if store is not None:
        render_coverage(_coverage(settings, store), settings.routing, console)


def _coverage(settings: Settings, store: RecordStore | None) -> list[dict[str, Any]]:
    from bot.routing import coverage

    return coverage(settings.tiers, settings.routing, store) if store is not None else []


@app.command("eval")
def evaluate(
    suite: Annotated[
        str, typer.Option("--suite", metavar="NAME", help="examples (shipped) or exercism (the shared data).")
    ] = "examples",
    suite_dir: Annotated[
        Path | None,
        typer.Option(
            "--suite-dir",
            metavar="DIR",
            help="A folder of *.toml task files or Exercism exercises (replaces --suite's folder).",
            file_okay=False,
        ),
    ] = None,
    tiers: Annotated[
        str | None,
        typer.Option("--tiers", metavar="A,B", help="Only these tiers, in this order (default: all)."),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option("--task", metavar="GLOB", help="Only the tasks whose name matches (repeatable)."),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", metavar="N", min=1, help="Tasks run at once.")] = 1,
    test_timeout: Annotated[
        float, typer.Option("--test-timeout", metavar="SECONDS", min=1, help="Per hidden-test run.")
    ] = 60.0,
    no_retry: Annotated[bool, typer.Option("--no-retry", help="One try per task, no retry.")] = False,
    no_record: Annotated[
        bool,
        typer.Option(
            "--no-record", help="Store the results only: record no attempts for the router to learn from."
        ),
    ] = False,
    report: Annotated[
        bool,
        typer.Option("--report", help="Run nothing: show the latest stored run and the routing coverage."),
    ] = False,
    json_output: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Score each tier on a task suite: solved by its hidden tests, failing, refused.
    Each try is recorded as an attempt the router learns from (unless --no-record)."""
    from bot.evaluation.feed import attempt_records
    from bot.evaluation.render import EvalProgress, render_eval
    from bot.evaluation.runner import EvalOptions, run_eval
    from bot.evaluation.suites import TaskError, load_suite, pick_tasks
    from bot.evaluation.suites import suite_dir as named_suite_dir
    from bot.records import RecordStore

    setup_logging(verbose)
    settings = _settings(config)
    chosen = _pick_tiers(settings, [n.strip() for n in tiers.split(",") if n.strip()] if tiers else None)
    dirs = _data_dirs(settings, data_dir)
    if report:
        _eval_report(settings, dirs, json_output)
    try:
        folder = suite_dir or named_suite_dir(suite)
        tasks = pick_tasks(load_suite(folder), task or [])
    except TaskError as exc:
        _bad_input(str(exc))
    options = EvalOptions(
        data_dir=dirs.cache,
        sandbox=settings.make_sandbox(),
        caps=settings.caps,
        test_timeout_s=test_timeout,
        jobs=jobs,
        retry=not no_retry,
    )
    name = suite if suite_dir is None else suite_dir.resolve().name
    with report_only_stdout():
        if json_output:
            run = asyncio.run(run_eval(name, tasks, chosen, options))
        else:
            with EvalProgress(_err(), len(tasks) * len(chosen)) as progress:
                run = asyncio.run(run_eval(name, tasks, chosen, options, progress))
    tried = [] if no_record else attempt_records(run, tasks)
    RecordStore(dirs.records).add_eval_results(run.to_rows(), tried)
    if json_output:
        sys.stdout.write(json.dumps(run.to_json(), indent=2) + "\n")
    else:
        render_eval(run, Console())
    raise typer.Exit(EXIT_OK if run.ladder().tiers else EXIT_FAILED)


def _eval_report(settings: Settings, dirs: DataDirs, json_output: bool) -> NoReturn:
    """The latest stored eval run and the coverage the router reads."""
    from bot.evaluation.render import render_eval
    from bot.evaluation.scores import EvalRun
    from bot.records import RecordStore
    from bot.report import render_coverage

    store = RecordStore(dirs.records) if dirs.records.exists() else None
    run = EvalRun.from_rows(store.eval_results()) if store is not None else None
    coverage = _coverage(settings, store)
    if json_output:
        data = {"eval": run.to_json() if run is not None else None, "coverage": coverage}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        raise typer.Exit(EXIT_OK)
    console = Console()
    if run is None:
        console.print("no eval run stored yet: run `patchling eval`")
    else:
        render_eval(run, console)
    render_coverage(coverage, settings.routing, console)
    raise typer.Exit(EXIT_OK)


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option("--host", metavar="ADDRESS", help="Interface to listen on (0.0.0.0: every interface)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port for GitHub's webhooks.")] = 3000,
    forward: Annotated[
        str | None,
        typer.Option(
            "--forward",
            metavar="URL",
            help="Relay GitHub's deliveries from this smee-style channel (default: WEBHOOK_PROXY_URL).",
        ),
    ] = None,
    config: ConfigOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the GitHub App (webhooks in, pull requests out); with no App configured, its setup page."""
    from bot.serve import serve as run_server  # the GitHub side, loaded only here

    try:
        run_server(_settings(config), host, port, verbose=verbose, forward=forward, config_file=config)
    except ValueError as exc:  # incomplete settings: nothing was started
        _bad_input(str(exc))


@app.command()
def worker(config: ConfigOption = None, verbose: VerboseOption = False) -> None:
    """Run jobs from the Redis queue (PATCHLING_QUEUE_URL=redis://…); any number, on any hosts."""
    from bot.serve import run_worker  # the GitHub side, loaded only here

    try:
        run_worker(_settings(config), verbose=verbose)
    except ValueError as exc:  # incomplete settings: nothing was started
        _bad_input(str(exc))


@app.command()
def prune(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be removed.")] = False,
) -> None:
    """Remove test environments unused for PATCHLING_ENVS_MAX_AGE_DAYS, then the least
    recently used past PATCHLING_ENVS_MAX_GB; never one a running job uses."""
    from bot.prune import describe, limits_of, size_text
    from bot.prune import prune as prune_envs
    from bot.pyenv import envs_dir_in

    settings = _settings(config)
    envs_dir = envs_dir_in(_data_dirs(settings, data_dir).cache)
    result = prune_envs(envs_dir, limits_of(settings), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for entry in result.removed:
        typer.echo(f"{verb} {describe(entry, envs_dir)} ({size_text(entry.size)})")
    freed = "would free" if dry_run else "freed"
    typer.echo(
        f"{freed} {size_text(result.freed)} in {envs_dir}; kept {result.kept},"
        f" {len(result.busy)} in use (left for later)"
    )


@app.command()
def setup(
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="The interface `serve` listens on.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="The port `serve` listens on.")] = 3000,
    config: ConfigOption = None,
) -> None:
    """Print the address of the page that registers the GitHub App."""
    from bot.serve import local_address, unconfigured

    settings = _settings(config)
    if not unconfigured(settings):
        typer.echo(
            f"A GitHub App is configured (GITHUB_APP_ID={settings.github_app_id}); `patchling serve` runs it."
        )
        return
    address = (settings.public_url or local_address(host, port)).rstrip("/")
    typer.echo(f"Start `patchling serve` (or `make serve`), then open {address}/ to register the GitHub App.")


if __name__ == "__main__":
    app()
