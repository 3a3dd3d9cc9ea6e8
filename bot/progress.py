"""What the engine tells its caller while an edit runs: a few typed events,
one per finished stage. Each surface renders them its own way (the CLI in
bot.report, the status comment in bot.messages); `stage` names an event in
logs and metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:  # plain data, no imports at run time: bot.messages renders these
    from bot.verify import TestRun

__all__ = [
    "ContextChosen",
    "EnvironmentReady",
    "Generated",
    "Planned",
    "Progress",
    "ProgressFn",
    "Refused",
    "Routed",
    "TestWritten",
    "TestsRan",
    "Verified",
    "log_fields",
]


@dataclass(frozen=True)
class Routed:
    """Where on the tier ladder the request starts, and why (bot.routing)."""

    stage: ClassVar[str] = "route"
    tier: str  # the tier it starts at
    order: list[str]  # every tier it may try, in order
    line: str  # "route: started at tier X (verified 8/10 on 'change' in python)"


@dataclass(frozen=True)
class ContextChosen:
    """The code a tier's plan is made from."""

    stage: ClassVar[str] = "context"
    tier: str
    files: list[str]
    tokens: int
    budget: int


@dataclass(frozen=True)
class Planned:
    stage: ClassVar[str] = "plan"
    tier: str
    files: list[str]
    source: str  # "model", or how the plan was found without one


@dataclass(frozen=True)
class Generated:
    """Every planned file has the model's new content (in memory)."""

    stage: ClassVar[str] = "generated"
    tier: str
    files: list[str]


@dataclass(frozen=True)
class Verified:
    """The change passed the checks made before writing (paths, syntax, size):
    applied in memory, about to be written and tested."""

    stage: ClassVar[str] = "applied"
    tier: str
    files: list[str]


@dataclass(frozen=True)
class Refused:
    """A tier's attempt ended without a change; the next tier is tried."""

    stage: ClassVar[str] = "tier_failed"
    tier: str
    outcome: str  # an engine Outcome
    detail: str


@dataclass(frozen=True)
class EnvironmentReady:
    """The repository's test environment was built or reused; `tier` is set
    when the change itself needed one (it touched the dependency files)."""

    stage: ClassVar[str] = "environment"
    summary: str
    tier: str | None = None


@dataclass(frozen=True)
class TestsRan:
    __test__ = False  # not a pytest test class, whatever its name says
    when: Literal["before", "after"]
    run: TestRun
    tier: str | None = None  # None for the tests before any change

    @property
    def stage(self) -> str:
        return f"tests_{self.when}"


@dataclass(frozen=True)
class TestWritten:
    """The test a tier wrote first (bot.testfirst) ran alone on the unchanged
    code: `kept` when it failed there, as it must; else `detail` says why it
    was discarded."""

    __test__ = False  # not a pytest test class, whatever its name says
    stage: ClassVar[str] = "test_first"
    tier: str
    path: str
    kept: bool
    detail: str = ""


Progress = (
    Routed
    | ContextChosen
    | Planned
    | Generated
    | Verified
    | Refused
    | EnvironmentReady
    | TestWritten
    | TestsRan
)
ProgressFn = Callable[[Progress], None]


def log_fields(event: Progress) -> dict[str, Any]:
    """The few facts of an event worth a log line: never file contents or output."""
    fields: dict[str, Any] = {"tier": event.tier} if event.tier else {}
    if isinstance(event, ContextChosen | Planned | Generated | Verified):
        fields["files"] = len(event.files)
    if isinstance(event, Refused):
        fields["outcome"] = event.outcome
    if isinstance(event, Routed):
        fields["order"] = ",".join(event.order)
    if isinstance(event, TestWritten):
        fields["kept"] = event.kept
    if isinstance(event, TestsRan):
        run = event.run
        fields |= {"passed": run.passed, "failed": run.failed, "errors": run.errors}
        fields |= {"timed_out": run.timed_out, "duration_s": run.duration_s}
    return fields
