"""`patchling serve` collects each job's cyclic garbage as the job ends,
though settle_heap makes the collector's own full collections rare."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.config import Settings
from bot.queue import JobQueue
from bot.serve import collect_after_jobs


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


@pytest.fixture
def collector_off() -> Iterator[None]:
    """Only an explicit collection frees cycles while the test runs."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def run_one_leaving_a_cycle(queue: JobQueue) -> weakref.ref[Node]:
    refs: list[weakref.ref[Node]] = []

    @queue.huey.task()
    def leaves_garbage() -> None:
        refs.append(weakref.ref(Node()))

    leaves_garbage()
    assert queue.run_pending() == 1
    return refs[0]


def test_a_finished_job_leaves_no_cyclic_garbage(tmp_path: Path, collector_off: None) -> None:
    queue = JobQueue(Settings(_env_file=None, data_dir=tmp_path))
    collect_after_jobs(queue)
    assert run_one_leaving_a_cycle(queue)() is None


def test_without_it_the_cycle_outlives_the_job(tmp_path: Path, collector_off: None) -> None:
    # The control: what the first test sees is the handler's doing.
    queue = JobQueue(Settings(_env_file=None, data_dir=tmp_path))
    assert run_one_leaving_a_cycle(queue)() is not None
    gc.collect()
