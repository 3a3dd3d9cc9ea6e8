"""The load benchmark's counting: answers, ledger states, bad deliveries, memory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.load import LedgerCounts, Tally, bad_count, ledger_counts, process_tree, rss_mb, workload
from bench.webhooks import PAYLOAD, percentile
from bot.ledger import JobRequest, Ledger


def test_answers_are_sorted_into_accepted_rejected_and_errors() -> None:
    tally = Tally(statuses=Counter({202: 7, 401: 2, 400: 1, 500: 1, 200: 1}), errors=Counter(ConnectError=2))
    assert (tally.sent, tally.accepted, tally.rejected, tally.server_errors) == (14, 7, 3, 1)
    later = Tally(statuses=Counter({202: 3}), latencies_ms=[4.0], max_lag_ms=9.0)
    tally.add(later)
    assert (tally.accepted, tally.sent, tally.max_lag_ms, tally.latencies_ms) == (10, 17, 9.0, [4.0])


def test_percentiles_take_the_nearest_rank() -> None:
    values = [float(n) for n in range(100, 0, -1)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (51.0, 99.0, 100.0)
    assert percentile([3.0], 99) == 3.0


def test_ledger_states_count_as_enqueued_waiting_and_processed() -> None:
    counts = LedgerCounts({"received": 1, "queued": 4, "running": 2, "no_token": 10, "done": 3})
    assert (counts.recorded, counts.enqueued, counts.waiting, counts.processed) == (20, 19, 6, 13)
    assert LedgerCounts({}).enqueued == 0


def job(n: int) -> JobRequest:
    return JobRequest(
        job_id=f"j{n}",
        delivery_id=f"d{n}",
        event="issue_comment",
        target="issue",
        command="edit",
        owner="o",
        repo="r",
        clone_url="https://example.invalid/o/r.git",
        default_branch="main",
        number=1,
        comment_id=n,
        requester_login="u",
        requester_id=1,
    )


def test_ledger_counts_read_a_real_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "jobs.sqlite3")
    ledger.claim_many([job(n) for n in range(5)])
    ledger.enqueued(["j0", "j1", "j2", "j3"])
    ledger.set_status("j0", "no_token")
    ledger.set_status("j1", "running")
    counts = ledger_counts(tmp_path / "jobs.sqlite3")
    assert counts.by_status == {"received": 1, "queued": 2, "running": 1, "no_token": 1}
    assert (counts.enqueued, counts.processed) == (4, 1)
    assert ledger_counts(tmp_path / "absent.sqlite3").recorded == 0


@pytest.mark.skipif(not PAYLOAD.exists(), reason="needs the shared webhook payloads")
def test_every_nth_delivery_is_spoiled_both_ways() -> None:
    work = workload(40, 0, 10)
    assert bad_count(work) == 4
    spoiled = [headers for n, (_, headers) in enumerate(work) if n % 10 == 9]
    assert sum("x-hub-signature-256" not in h for h in spoiled) == 2  # unsigned
    assert sum("x-hub-signature-256" in h for h in spoiled) == 2  # signed with another secret
    assert len({h["x-github-delivery"] for _, h in work}) == 40
    assert bad_count(workload(10, 0, 0)) == 0


def test_memory_counts_the_whole_process_tree() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; b = bytearray(200 << 20); sys.stdout.write('x'); "
            "sys.stdout.flush(); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.read(1) == b"x"  # its 200 MB are in memory
        assert child.pid in process_tree(os.getpid())
        assert rss_mb(os.getpid()) > rss_mb(child.pid) >= 200  # the parent's figure holds the child's
    finally:
        child.kill()
        child.wait()
    assert child.pid not in process_tree(os.getpid())
