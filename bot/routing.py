"""Where a request starts on the tier ladder, learned from the attempt records.

The ladder is the configured tier order, cheapest first. Without records a
request climbs it from the bottom, as it always did; each attempt is recorded
with the request's kind and language (bot.features). From those records each
tier gets a standing for a kind of request:

- proven: it verified at least `min_rate` of its last `window` attempts on
  similar requests, and made at least `min_samples` of them. "Similar" is the
  same kind and language; with too few of those, the same kind; then any.
- weak: enough attempts, too few verified.
- failing: its last `max_failures` attempts on this kind all failed.
- unknown: too few attempts to judge.

A request starts at the cheapest tier that is proven or still unknown (so a new
tier earns a record), and escalates to the tiers above it on failure, leaving
out the failing ones. Weak and failing tiers are held back, but one request of
a kind in `reprobe_every` tries a held-back tier again (once that many requests
have passed it over, counted from the records: deterministic), so a record
can recover. When every tier is held back, the configured order stands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.config import Routing, Tier
from bot.records import RecordStore

Standing = Literal["proven", "weak", "failing", "unknown"]
HELD: tuple[Standing, ...] = ("weak", "failing")
# An attempt that made an acceptable change; any other outcome a model answered with is a failure.
ACCEPTED = ("verified", "unexercised", "unverified")  # a change made; only "verified" counts toward the rate


@dataclass(frozen=True)
class TierRecord:
    """A tier's recent record on one kind of request (and language)."""

    tier: str
    verified: int
    samples: int
    scope: str  # which requests it was counted over: "'change' in python", "'change'", "all"
    failures: int  # in a row, the latest first, on this kind
    passed_over: int  # requests of this kind since its last attempt on one
    standing: Standing

    @property
    def rate(self) -> float | None:
        return self.verified / self.samples if self.samples else None

    def describe(self) -> str:
        return f"verified {self.verified}/{self.samples} on {self.scope}"

    def to_json(self) -> dict[str, Any]:
        rate = self.rate
        return {
            "tier": self.tier,
            "verified": self.verified,
            "samples": self.samples,
            "rate": None if rate is None else round(rate, 4),
            "scope": self.scope,
            "failures_in_a_row": self.failures,
            "passed_over": self.passed_over,
            "standing": self.standing,
        }


@dataclass(frozen=True)
class Route:
    """The tiers to try, in order, and why the first."""

    tiers: list[str]
    reason: str
    held: list[str] = field(default_factory=list)  # left out, each with why
    probing: list[str] = field(default_factory=list)  # held back, but tried this time

    @property
    def start(self) -> str | None:
        return self.tiers[0] if self.tiers else None

    def line(self) -> str:
        """One line for the status comment and the CLI."""
        text = f"route: started at tier {self.start} ({self.reason})"
        if self.held:
            text += "; held back: " + ", ".join(self.held)
        return text


def _scope(kind: str | None, language: str | None) -> str:
    if kind is None:
        return "all"
    return f"'{kind}' in {language}" if language is not None else f"'{kind}'"


class Router:
    def __init__(self, settings: Routing, records: RecordStore) -> None:
        self.settings = settings
        self.records = records

    def record(self, tier: str, kind: str, language: str) -> TierRecord:
        """`tier`'s standing on requests of `kind` in `language`."""
        settings, store = self.settings, self.records
        verified, samples, scope = self._rate(tier, kind, language)
        recent = store.recent_outcomes(tier, settings.max_failures, kind=kind)
        failures = len(recent) if all(o not in ACCEPTED for o in recent) else 0
        standing = self._standing(verified, samples, failures)
        passed = store.requests_since(tier, kind)
        return TierRecord(tier, verified, samples, scope, failures, passed, standing)

    def _rate(self, tier: str, kind: str, language: str) -> tuple[int, int, str]:
        """Verified and samples at the most similar scope with enough of them."""
        counts: tuple[int, int, str] = (0, 0, "all")
        for scope_kind, scope_language in ((kind, language), (kind, None), (None, None)):
            outcomes = self.records.recent_outcomes(
                tier, self.settings.window, kind=scope_kind, language=scope_language
            )
            counts = (outcomes.count("verified"), len(outcomes), _scope(scope_kind, scope_language))
            if len(outcomes) >= self.settings.min_samples:
                break
        return counts

    def _standing(self, verified: int, samples: int, failures: int) -> Standing:
        settings = self.settings
        if failures >= settings.max_failures:
            return "failing"
        if samples < settings.min_samples:
            return "unknown"
        return "proven" if verified / samples >= settings.min_rate else "weak"

    def route(self, tiers: Sequence[Tier], kind: str, language: str) -> Route:
        return plan_route([self.record(t.name, kind, language) for t in tiers], self.settings)

    def order(self, tiers: Sequence[Tier], kind: str, language: str) -> tuple[list[Tier], Route]:
        """`tiers` in the route's order, and the route."""
        route = self.route(tiers, kind, language)
        by_name = {t.name: t for t in tiers}
        return [by_name[name] for name in route.tiers], route


def plan_route(records: Sequence[TierRecord], settings: Routing) -> Route:
    """The route over the ladder `records` (cheapest first) describe."""
    due = {r.tier for r in records if r.standing in HELD and r.passed_over >= settings.reprobe_every - 1}
    open_ = [r for r in records if r.standing not in HELD or r.tier in due]
    if not open_:
        return _fallback(records)
    start = open_[0]
    above = records[records.index(start) + 1 :]
    tiers = [start.tier] + [r.tier for r in above if r.standing != "failing" or r.tier in due]
    held = [_why_held(r) for r in records if r.tier not in tiers]
    probing = [r.tier for r in records if r.tier in due and r.tier in tiers]
    return Route(tiers, _reason(start, due), held, probing)


def _fallback(records: Sequence[TierRecord]) -> Route:
    """Every tier held back: the ladder as configured, failing tiers last resort only."""
    trying = [r for r in records if r.standing != "failing"] or list(records)
    held = [_why_held(r) for r in records if r not in trying]
    return Route([r.tier for r in trying], "every tier is held back: the configured order", held)


def _reason(start: TierRecord, due: set[str]) -> str:
    if start.tier in due:
        return f"re-probing after {start.passed_over} requests passed it over; {start.describe()}"
    if start.standing == "unknown":
        return f"too few records to judge it: {start.describe()}"
    return start.describe()


def _why_held(record: TierRecord) -> str:
    if record.standing == "failing":
        return f"{record.tier} (failed {record.failures} in a row)"
    return f"{record.tier} ({record.describe()})"


def coverage(tiers: Sequence[Tier], settings: Routing, records: RecordStore) -> list[dict[str, Any]]:
    """Per kind and language in the records, and per tier: the record the
    router reads, and whether the next such request would start there."""
    router = Router(settings, records)
    rows: list[dict[str, Any]] = []
    for kind, language in records.request_kinds():
        ladder = [router.record(t.name, kind, language) for t in tiers]
        start = plan_route(ladder, settings).start
        rows.extend(
            {"kind": kind, "language": language, **r.to_json(), "start": r.tier == start} for r in ladder
        )
    return rows


def coverage_caption(settings: Routing) -> str:
    """What the coverage table's columns mean, under these settings."""
    if not settings.enabled:
        return "routing is off (routing.enabled = false): every request climbs the configured order"
    return (
        f"verified: of the tier's last {settings.window} attempts on similar requests (over: which);"
        f" proven: at least {settings.min_rate:.0%} of at least {settings.min_samples};"
        f" failing: {settings.max_failures} failures in a row on the kind;"
        f" start: where the next such request starts"
    )
