"""How a benchmark speaks of its targets. A benchmark reports: a missed target
is printed plainly, and the run still exits 0 (a busy machine misses speed
targets without anything being broken)."""

from __future__ import annotations


def report_target(description: str, met: bool) -> None:
    """One line per target: `target <description>: met`, or MISSED in capitals."""
    print(f"target {description}: {'met' if met else 'MISSED'}")
