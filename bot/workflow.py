"""The workflow: what one job does.

Permission check, target, one job at a time per repository branch (the lock
the queue hands in), mirror fetch and checkout, the engine, commit, push
(re-applied once when the branch moved on), PR, and the status comment that
follows it all. What a run did is kept in its Memo, so that a run resumed
after an interruption continues it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pygit2

from bot import github as gh
from bot import messages, metrics, workspace
from bot.config import Settings, Tier
from bot.ledger import MAX_RUNS, JobRequest, JobStatus, Memo, MemoryMemo
from bot.progress import Progress, TestsRan, log_fields
from bot.repo_settings import (
    MissingBranch,
    RepoSettings,
    RepoSettingsError,
    load_repo_settings,
    select_tiers,
)

if TYPE_CHECKING:
    from bot.engine import EditRequest, EditResult
    from bot.ranking import Focus

log = logging.getLogger(__name__)


class BranchBusy(Exception):
    """Another job holds this repository branch (the lock the queue hands to `work`); try again later."""


LockFn = Callable[[str], AbstractContextManager[None]]


@contextmanager
def _no_lock(name: str) -> Iterator[None]:
    yield


class Declined(Exception):
    """The job cannot go ahead; the message goes to the requester."""


@dataclass(frozen=True)
class Plan:
    """Where the change goes, and with which repository settings."""

    branch: str  # committed on and pushed to
    start: str  # the branch the work tree starts from
    settings: RepoSettings
    tiers: list[Tier]
    pull: gh.Pull | None = None  # set when pushing to an existing pull request


def slug(text: str, limit: int = 40) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out or "edit"


def issue_branch(prefix: str, number: int, title: str) -> str:
    # From the issue's title, so a second /edit on the issue lands on the same branch and PR.
    name = f"{prefix}{number}-{slug(title)}"
    return name if pygit2.reference_is_valid_name(f"refs/heads/{name}") else f"patchling/{number}"


def _open_api(job: JobRequest, settings: Settings, github: gh.GitHubFactory) -> gh.RepoAPI | None:
    """The job's API with a fresh installation token, or None (logged) when
    GitHub gives none: then nothing can be posted."""
    try:
        app = github()
        installation_id = job.installation_id or gh.find_installation(app, job.owner, job.repo)
        token = gh.mint_token(app, installation_id, job.repo)
    except Exception as exc:
        # Without a token nothing can be posted: the log is the only place to say why.
        status = gh.status_of(exc)
        why = {
            404: "the App is not installed on it (or it is gone)",
            422: "GitHub refused a token for it (not in the App's installation, or gone)",
        }.get(status or 0, f"{type(exc).__name__}: {exc}" if status is None else f"GitHub answered {status}")
        log.error(
            "job %s: no installation token for %s: %s; no reply is possible", job.job_id, job.full_name, why
        )
        return None
    return gh.RepoAPI.with_token(
        app,
        token,
        job.owner,
        job.repo,
        secrets=job_secrets(settings, token),
        # A public comment names the tier, never where the server keeps its models.
        endpoints=[tier.base_url for tier in settings.tiers],
        renew=lambda: gh.mint_token(app, installation_id, job.repo),
    )


def work(
    job: JobRequest,
    settings: Settings,
    github: gh.GitHubFactory,
    *,
    lock: LockFn = _no_lock,
    memo: Memo | None = None,
) -> JobStatus:
    """Carry out one job; returns its outcome for the ledger. Raises BranchBusy
    (before posting anything) when another job holds the branch. `memo` keeps
    what a run did, so that a run after an interruption continues it."""
    api = _open_api(job, settings, github)
    if api is None:
        return JobStatus.NO_TOKEN
    try:
        return _work(job, settings, api, lock, memo if memo is not None else MemoryMemo())
    except BranchBusy:
        raise
    except gh.RepositoryGone as gone:
        log.error("job %s stopped: %s; no reply is possible", job.job_id, gone)
        return JobStatus.REPO_GONE
    except Exception as exc:
        if gh.status_of(exc) == 404:  # deleted, or the App uninstalled, mid-job: no one to tell
            log.error("job %s stopped: %s is gone or out of the App's reach", job.job_id, job.full_name)
            return JobStatus.REPO_GONE
        log.exception("job %s could not start", job.job_id)
        try:
            _reply(api, job, f"Patchling could not start on this (job `{job.job_id}`): {_describe(exc)}.")
            api.react(job.comment_kind, job.comment_id, "confused")
        except Exception:
            log.warning("could not tell job %s's requester why it stopped", job.job_id)
        return JobStatus.ERROR
    finally:
        api.revoke_token()


def job_secrets(settings: Settings, token: str | None) -> list[str | None]:
    """What a job must never post nor send to a model: its token, the model API
    keys, the webhook secret and the App's private key."""
    webhook_secret = settings.github_webhook_secret
    secrets = [token, *(tier.api_key() for tier in settings.tiers)]
    secrets.append(webhook_secret.get_secret_value() if webhook_secret else None)
    with contextlib.suppress(OSError):  # the token was minted with it: it is there
        secrets.append(settings.private_key())
    return secrets


def abandon(job: JobRequest, settings: Settings, github: gh.GitHubFactory, progress: dict[str, Any]) -> None:
    """Close a job that restarts kept interrupting: its status comment (or a
    reply) says so, and the request gets 😕."""
    api = _open_api(job, settings, github)
    if api is None:
        return
    try:
        text = (
            f"stopped: the server was interrupted {MAX_RUNS} times while working on this; "
            "ask again to start afresh"
        )
        if "status" in progress:
            memo = MemoryMemo()
            memo.save(status=progress["status"])
            StatusBoard(api, job, memo).finish(text, ok=False)
        else:
            _reply(api, job, f"Patchling {text} (job `{job.job_id}`).")
        api.react(job.comment_kind, job.comment_id, "confused")
    except Exception:
        log.warning("could not tell job %s's requester it was given up", job.job_id, exc_info=True)
    finally:
        api.revoke_token()


def _work(job: JobRequest, settings: Settings, api: gh.RepoAPI, lock: LockFn, memo: Memo) -> JobStatus:
    if job.command == "help":
        _reply(api, job, job.reply)
        return JobStatus.HELP
    # Permission first: nothing else happens for people who cannot push.
    if api.permission(job.requester_login) not in gh.WRITE_ROLES:
        _reply(
            api,
            job,
            f"Thanks for the request, @{job.requester_login}. Patchling only takes `/edit` requests "
            "from people with write access to this repository, so I have left this one alone.",
        )
        return JobStatus.DENIED
    # As the job starts; GitHub keeps one 👀 per comment, so a retry adds none.
    api.react(job.comment_kind, job.comment_id, "eyes")
    try:
        plan = _plan(job, api, settings)
    except Declined as declined:
        _reply(api, job, str(declined))
        api.react(job.comment_kind, job.comment_id, "confused")
        return JobStatus.DECLINED
    with lock(f"{job.full_name}@{plan.branch}"):
        board = StatusBoard(api, job, memo)
        try:
            delivered = _edit_and_deliver(_Run(job, settings, api, plan, board, memo))
        except Exception as exc:
            log.exception("job %s stopped", job.job_id)
            board.finish(f"stopped: {_describe(exc)}", ok=False)
            delivered = False
        api.react(job.comment_kind, job.comment_id, "rocket" if delivered else "confused")
        return JobStatus.DONE if delivered else JobStatus.FAILED


def _reply(api: gh.RepoAPI, job: JobRequest, body: str) -> None:
    """Answer where the request was made: in the review thread, or the conversation."""
    if job.target == "review":
        api.reply_in_thread(job.number, job.comment_id, body)
    else:
        api.comment(job.number, body)


def _plan(job: JobRequest, api: gh.RepoAPI, settings: Settings) -> Plan:
    """Check the target and read the repository's settings (from a fresh fetch of
    the default branch) to name the branch the job will lock and push."""
    pull = None
    if job.target != "issue":
        pull = api.pull(job.number)
        if pull.state != "open":
            raise Declined(
                f"Pull request #{pull.number} is {pull.state}; Patchling only pushes to open ones."
            )
        if pull.head_repo != job.full_name:
            where = f"`{pull.head_repo}`" if pull.head_repo else "a fork that no longer exists"
            raise Declined(
                f"This pull request's branch lives in {where}, not in this repository, so Patchling cannot "
                "push to it (and never runs a fork's code with this repository's credentials). Push the "
                "branch to this repository, or apply the change yourself."
            )
    _check_size(settings.max_repo_mb, api.size_kb() or 0, "GitHub counts it at")
    read = _read_settings(job, settings.max_repo_mb)
    repo_settings, branches = _from_mirror(job, api, settings.data_dir, read)
    try:
        tiers = select_tiers(settings.tiers, repo_settings.tiers)
    except RepoSettingsError as exc:
        raise Declined(
            f"Patchling cannot start: {exc}. Fix it on `{job.default_branch}` and ask again."
        ) from None
    if pull is not None:
        return Plan(pull.head_ref, pull.head_ref, repo_settings, tiers, pull)
    branch = issue_branch(repo_settings.branch_prefix, job.number, job.title)
    # A second /edit on the issue continues its branch rather than starting over.
    start = branch if branch in branches else job.default_branch
    return Plan(branch, start, repo_settings, tiers)


def _check_size(cap_mb: int, size_kb: float, counted: str) -> None:
    """Declines a repository over the server's cap (the `max_repo_mb` setting)."""
    if size_kb > cap_mb * 1024:
        size_mb = size_kb / 1024
        shown = f"{size_mb:,.0f}" if size_mb >= 10 else f"{size_mb:.1f}"
        raise Declined(
            f"This repository is too large for this Patchling server: {counted} {shown} MB, "
            f"and the server takes repositories up to {cap_mb:,} MB (its `max_repo_mb` setting)."
        )


def _read_settings(
    job: JobRequest, cap_mb: int
) -> Callable[[pygit2.Repository], tuple[RepoSettings, set[str]]]:
    """The repository's settings, and the names of its branches, from the mirror;
    a mirror over the size cap is removed, and the job declined."""

    def read(mirror: pygit2.Repository) -> tuple[RepoSettings, set[str]]:
        path = Path(mirror.path)
        try:
            _check_size(cap_mb, workspace.disk_usage(path) / 1024, "its copy on the server takes")
        except Declined:
            workspace.remove_mirror(path)  # the caller holds its lock
            raise
        try:
            repo_settings = load_repo_settings(mirror, f"refs/heads/{job.default_branch}")
        except MissingBranch as exc:
            if workspace.branch_tip(mirror, job.default_branch) is not None:
                # The branch is there, its commit unreadable: the mirror is damaged.
                raise workspace.MirrorDamaged(f"the tip of `{job.default_branch}` cannot be read") from None
            raise Declined(f"Patchling cannot start: {exc}.") from None
        except RepoSettingsError as exc:
            raise Declined(
                f"Patchling cannot start: {exc}. Fix it on `{job.default_branch}` and ask again."
            ) from None
        return repo_settings, set(mirror.branches.local)

    return read


_T = TypeVar("_T")


def _from_mirror(
    job: JobRequest, api: gh.RepoAPI, data_dir: Path, use: Callable[[pygit2.Repository], _T]
) -> _T:
    """Fetch the repository's mirror and `use` it, holding the mirror's lock.
    A mirror found damaged, by the fetch or by `use`, is removed and cloned
    afresh once; damaged again, the job stops saying so."""
    path = workspace.mirror_path(data_dir, job.full_name)
    with workspace.mirror_lock(path):
        try:
            return use(workspace.update_mirror(path, job.clone_url, api.token))
        except Exception as exc:
            if not workspace.is_damage(exc):
                raise
            log.warning(
                "job %s: the mirror of %s is damaged (%s); cloning it afresh", job.job_id, job.full_name, exc
            )
        workspace.remove_mirror(path)
        try:
            return use(workspace.update_mirror(path, job.clone_url, api.token))
        except Exception as exc:
            if not workspace.is_damage(exc):
                raise
            workspace.remove_mirror(path)  # nothing half-cloned is left for the next job
            raise workspace.WorkspaceError(
                "the server's copy of the repository was damaged, and a fresh clone of it failed "
                f"the same way ({exc})"
            ) from None


@dataclass(frozen=True)
class Delivery:
    """A pushed commit and what is posted with it: recorded before the push,
    so that a run resumed after one finds the commit and posts only this."""

    sha: str
    branch: str
    report: str  # the change report: status comment, or a comment on an open PR
    reply: str  # the review-thread reply, for review comments
    title: str
    body: str  # of a new PR
    verified: bool


@dataclass(frozen=True)
class _Run:
    """One job under its branch lock: what each step of editing and delivering needs."""

    job: JobRequest
    settings: Settings
    api: gh.RepoAPI
    plan: Plan
    board: StatusBoard
    memo: Memo


def _edit_and_deliver(run: _Run) -> bool:
    """Check out, edit, commit, push and deliver, in a scratch directory removed whatever happens."""
    work = run.settings.data_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"job-{run.job.job_id}-", dir=work))
    try:
        return _in_scratch(run, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _in_scratch(run: _Run, scratch: Path) -> bool:
    # Fetched again, now that the branch is ours: a job that held it may have pushed since.
    found = _from_mirror(
        run.job, run.api, run.settings.data_dir, lambda mirror: _check_out(run, scratch, mirror)
    )
    if isinstance(found, Delivery):
        # An earlier run of this job pushed its commit and was cut short: deliver it, no new edit.
        run.board.done(f"resumed: `{found.sha[:7]}` is already on `{run.plan.branch}`")
        return _deliver(run.job, run.api, run.plan, found, run.board, run.memo)
    start, tree = found
    metrics.stage("clone")
    run.board.done(f"cloned `{start}` at `{str(tree.head.target)[:7]}`")
    return _edit_commit_deliver(run, tree)


def _check_out(
    run: _Run, scratch: Path, mirror: pygit2.Repository
) -> Delivery | tuple[str, pygit2.Repository]:
    """The delivery an earlier run pushed, or the branch the work starts from and a fresh work tree of it."""
    pushed = _pushed_before(run.memo, mirror, run.plan.branch)
    if pushed is not None:
        return pushed
    plan = run.plan
    start = plan.branch if workspace.branch_tip(mirror, plan.branch) is not None else plan.start
    shutil.rmtree(scratch / "tree", ignore_errors=True)  # what a damaged mirror let through
    return start, workspace.checkout(mirror, start, scratch / "tree", branch=plan.branch)


def _edit_commit_deliver(run: _Run, tree: pygit2.Repository) -> bool:
    result = _run_engine(run, tree)
    if _turned_down(run, result):
        return False
    job = run.job
    requester = workspace.Identity.user(job.requester_login, job.requester_id)
    message = messages.commit_message(job, result)
    oid = workspace.commit_paths(tree, result.files_changed, message, run.board.author, [requester])
    delivery = _push(job, run.api, run.plan, tree, oid, result, run.memo)
    return _deliver(job, run.api, run.plan, delivery, run.board, run.memo)


def _run_engine(run: _Run, tree: pygit2.Repository) -> EditResult:
    # The engine's side is imported only where a job runs: the web process stays light.
    from bot.engine import run_edit
    from bot.records import RecordStore

    request = _edit_request(run, tree)
    records = RecordStore(run.settings.data_dir / "records.sqlite3")
    edit = run_edit(
        request,
        tiers=run.plan.tiers,
        records=records,
        on_progress=run.board.progress,
        routing=run.settings.routing,
    )
    return asyncio.run(edit)


def _edit_request(run: _Run, tree: pygit2.Repository) -> EditRequest:
    from bot.engine import EditRequest

    job, settings, repo_settings = run.job, run.settings, run.plan.settings
    return EditRequest(
        Path(tree.workdir),
        job.instruction,
        focus=_focus(job),
        protected_paths=repo_settings.protected_paths(),
        allow_workflows=repo_settings.allow_workflows,
        caps=repo_settings.caps_within(settings.caps),
        secrets=job_secrets(settings, run.api.token),
        test_command=repo_settings.test or settings.test_command,
        setup_command=repo_settings.setup,
        test_timeout_s=settings.test_timeout_s,
        sandbox=settings.make_sandbox(),
        network=repo_settings.network,
        write_test=repo_settings.write_test(job.target),
        repo=job.full_name,
        job_id=job.job_id,
        data_dir=settings.data_dir,
    )


def _focus(job: JobRequest) -> Focus | None:
    """The lines a review comment was left on, which the edit centres on."""
    from bot.ranking import Focus

    if job.target == "review" and job.path and job.end_line:
        return Focus(job.path, job.start_line or job.end_line, job.end_line, job.diff_hunk)
    return None


def _turned_down(run: _Run, result: EditResult) -> bool:
    """Whether the result is not to be committed; the status comment says why."""
    from bot.files import is_protected

    if result.status == "failed" or not result.files_changed:
        run.board.finish(f"no change made: {result.message}", ok=False)
        _reply(run.api, run.job, messages.no_change_report(run.job, result))
        return True
    protected, allow = run.plan.settings.protected_paths(), run.plan.settings.allow_workflows
    touched = [p for p in result.files_changed if is_protected(p, protected, allow_workflows=allow)]
    if touched:  # the engine refuses these too; never commit one regardless
        run.board.finish(f"refused: the change touches protected paths {', '.join(touched)}", ok=False)
        return True
    return False


def _push(
    job: JobRequest,
    api: gh.RepoAPI,
    plan: Plan,
    tree: pygit2.Repository,
    oid: pygit2.Oid,
    result: EditResult,
    memo: Memo,
) -> Delivery:
    """Push the commit; when the branch moved on meanwhile, re-apply the commit
    onto its new tip and push once more. The delivery is recorded before each
    push (see Delivery)."""
    try:
        return _push_once(job, api, plan, tree, oid, result, memo)
    except workspace.PushRejected as rejected:
        if rejected.kind == "protected":
            raise workspace.WorkspaceError(
                f"GitHub refused the push to `{plan.branch}`: the branch is protected (branch protection "
                "or a ruleset). Allow the App to push to it, or ask on an issue, where Patchling opens a "
                "pull request from a branch of its own"
            ) from None
        if rejected.kind != "behind":
            raise
    log.info("job %s: %s moved on during the job; re-applying the commit", job.job_id, plan.branch)
    oid = workspace.replay(tree, oid, plan.branch, job.clone_url, api.token)
    return _push_once(job, api, plan, tree, oid, result, memo)


def _push_once(
    job: JobRequest,
    api: gh.RepoAPI,
    plan: Plan,
    tree: pygit2.Repository,
    oid: pygit2.Oid,
    result: EditResult,
    memo: Memo,
) -> Delivery:
    delivery = _delivery(job, plan, result, str(oid), workspace.commit_diff(tree, oid))
    memo.save(delivery=dataclasses.asdict(delivery))
    workspace.push(tree, job.clone_url, plan.branch, plan.branch, api.token)
    return delivery


def _pushed_before(memo: Memo, mirror: pygit2.Repository, branch: str) -> Delivery | None:
    """The delivery an earlier run recorded, when its commit is on the branch."""
    recorded = memo.load().get("delivery")
    if not recorded or recorded.get("branch") != branch:
        return None
    delivery = Delivery(**recorded)
    return delivery if workspace.branch_holds(mirror, branch, delivery.sha) else None


def _delivery(job: JobRequest, plan: Plan, result: EditResult, sha: str, diff: str) -> Delivery:
    return Delivery(
        sha=sha,
        branch=plan.branch,
        report=messages.change_report(job, result, sha),
        reply=messages.review_reply(sha, plan.branch, result, diff),
        title=messages.pr_title(job.instruction),
        body=messages.pr_body(job, result, sha),
        verified=result.status == "verified",
    )


def _deliver(
    job: JobRequest, api: gh.RepoAPI, plan: Plan, delivery: Delivery, board: StatusBoard, memo: Memo
) -> bool:
    sha = delivery.sha
    if plan.pull is not None:
        board.finish(f"pushed `{sha[:7]}` to `{plan.branch}`", ok=True, report=delivery.report)
        if job.target == "review" and not memo.load().get("replied"):
            api.reply_in_thread(job.number, job.comment_id, delivery.reply)
            memo.save(replied=True)
        return True
    board.done(f"committed `{sha[:7]}` and pushed to `{plan.branch}`")
    existing = api.open_pull_for(plan.branch)
    if existing is not None:
        number, url = existing
        if number != memo.load().get("pull"):  # an earlier job's PR: tell it what changed
            api.comment(number, delivery.report)
            memo.save(pull=number)  # told once, even after a resume; and the dashboard links it
        board.finish(f"pushed `{sha[:7]}` to #{number}: {url}", ok=True)
        return True
    try:
        number, url = api.create_pull(
            title=delivery.title,
            head=plan.branch,
            base=job.default_branch,
            body=delivery.body,
            draft=not delivery.verified,
        )
    except Exception as exc:
        # A create retried after a 5xx may have been made the first time: GitHub
        # then refuses the second (422) and the first is there to find.
        if gh.status_of(exc) != 422 or (found := api.open_pull_for(plan.branch)) is None:
            raise
        number, url = found
    memo.save(pull=number)
    kind = "pull request" if delivery.verified else "draft pull request"
    board.finish(f"{kind} opened: #{number} {url}", ok=True)
    return True


DISK_FULL = "the server's disk is full; ask again once its administrator has made room"


def _describe(exc: BaseException) -> str:
    if workspace.is_disk_full(exc):
        return DISK_FULL
    refused = gh.describe_failure(exc)
    if refused is not None:
        return refused
    # Only the project's own messages for people: any other text (an engine
    # ValueError about the temporary tree, say) may name server paths.
    if isinstance(exc, workspace.WorkspaceError | RepoSettingsError | Declined):
        return str(exc)
    return f"an internal error ({type(exc).__name__}); the server log has the details"


class StatusBoard:
    """One comment per job, edited in place as stages finish."""

    def __init__(self, api: gh.RepoAPI, job: JobRequest, memo: Memo | None = None) -> None:
        self.api = api
        self.job = job
        self.memo = memo
        self.lines: list[str] = ["✅ queued"]
        kept = (memo.load() if memo is not None else {}).get("status")
        if kept:
            # A run resumed after an interruption: the comment it posted is edited on.
            self.comment_id = int(kept["id"])
            self.author = workspace.Identity.user(kept["author_login"], int(kept["author_id"]))
            self.lines.append("✅ resumed after an interruption")
            self._update()
            return
        posted = api.comment(job.number, self.render())
        self.comment_id = posted.id
        # GitHub names the poster: the App's bot user, whose name and id sign our commits.
        self.author = workspace.Identity.user(posted.author_login, posted.author_id)
        if memo is not None:
            try:
                memo.save(status=dataclasses.asdict(posted))
            except sqlite3.OperationalError:
                # A full disk: the job goes on (and ends saying so); only a resume
                # after a kill would post a second status comment.
                log.warning("job %s: could not record its status comment", job.job_id, exc_info=True)

    def render(self, report: str | None = None, *, finished: bool = False) -> str:
        return messages.status_comment(self.job, self.lines, report, finished=finished)

    def _update(self, report: str | None = None, *, finished: bool = False) -> None:
        try:
            self.api.edit_comment(self.comment_id, self.render(report, finished=finished))
        except Exception:  # a status line is not worth failing the job over
            log.warning("could not update the status comment of job %s", self.job.job_id, exc_info=True)

    def done(self, text: str) -> None:
        self._add(f"✅ {text}")

    def _add(self, line: str) -> None:
        self.lines.append(line)
        self._update()

    def progress(self, event: Progress) -> None:
        """The engine's `on_progress`: one line per finished stage."""
        metrics.stage(event.stage, log_fields(event))
        if isinstance(event, TestsRan):
            self._keep_tests(event)
        self._add(messages.progress_line(event))

    def _keep_tests(self, event: TestsRan) -> None:
        """The counts go into the job's progress too, for the dashboard."""
        if self.memo is None:
            return
        run = event.run
        kept: dict[str, Any] = {"ran": True, "passed": run.passed, "failed": run.failed}
        kept |= {"errors": run.errors, "timed_out": run.timed_out}
        if run.could_not_run is not None:
            kept["could_not_run"] = run.could_not_run
        try:
            self.memo.save(**{event.stage: kept})
        except sqlite3.OperationalError:  # a full disk: the comment still says it
            log.warning("job %s: could not record its test counts", self.job.job_id, exc_info=True)

    def finish(self, text: str, *, ok: bool, report: str | None = None) -> None:
        self.lines.append(f"{'🚀' if ok else '😕'} {text}")
        self._update(report, finished=True)
