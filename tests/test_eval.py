"""`patchling eval` against the scripted model: a small suite of its own (three
one-file tasks), hidden tests run for real in the sandbox; and the shipped
suite checked against its reference solutions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import Routing, Tier
from bot.evaluation.scores import HIDDEN_FAILED, EvalRun
from bot.evaluation.suites import TaskError, load_suite, suite_dir
from bot.records import RecordStore
from bot.routing import Router
from tests.modelserver import ScriptedModel, _message_text, free_port
from tests.test_cli import write_config
from tests.test_engine import fenced

runner = CliRunner()
# In every hidden test file, never in the model's work tree: it must never reach a prompt.
MARKER = "hidden-marker-5e1f"
STUB = "def f() -> int:\n    return 0\n"


def right(name: str) -> str:
    return fenced(STUB.replace("return 0", "return 1"))


WRONG = fenced(STUB.replace("return 0", "return 2"))


def write_suite(
    root: Path, names: tuple[str, ...] = ("a", "b", "c"), instruction: str = "Make `f` in {name}.py return 1."
) -> Path:
    """A project with one module per task and a task file for each: make f() return 1."""
    project = root / "project"
    project.mkdir(parents=True)
    tasks = root / "tasks"
    tasks.mkdir()
    for name in names:
        (project / f"{name}.py").write_text(STUB)
        hidden = f"# {MARKER}\nfrom {name} import f\n\n\ndef test_{name}() -> None:\n    assert f() == 1\n"
        (tasks / f"task-{name}.toml").write_text(
            'project = "../project"\n'
            f'instruction = "{instruction.format(name=name)}"\n'
            f'[[reference]]\npath = "{name}.py"\nsearch = "return 0"\nreplace = "return 1"\n'
            f"[hidden]\n\"test_hidden_{name}.py\" = '''\n{hidden}'''\n"
        )
    return tasks


def rule(name: str, reply: str, **extra: Any) -> dict[str, Any]:
    return {"match": f"What to change in {name}.py:", "reply": reply, **extra}


def run_cli(config: Path, suite: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["eval", "--suite-dir", str(suite), "--config", str(config), "--json", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def prompts(server: ScriptedModel) -> list[str]:
    return [_message_text(call["messages"]) for call in server.calls()]


def test_counts_come_out_as_scripted(
    model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path
) -> None:
    model_server.script(rule("a", right("a")), rule("b", WRONG), rule("c", "no idea, sorry."))
    config = write_config(tmp_path / "p.toml", model_server.url, shared_data_dir)
    data = run_cli(config, write_suite(tmp_path), "--jobs", "2")
    (tier,) = data["tiers"]
    assert tier["status"] == "ran" and tier["tasks"] == 3
    counts = {k: tier[k] for k in ("solved", "failing", "refused", "no_answer", "error")}
    assert counts == {"solved": 1, "failing": 1, "refused": 1, "no_answer": 0, "error": 0}
    assert tier["solved_first_try"] == 1 and tier["solved_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert tier["mean_tokens_in"] > 0 and tier["mean_tokens_out"] > 0
    by_task = {r["task"]: r for r in data["results"]}
    outcomes = {name: (r["outcome"], r["tries"]) for name, r in by_task.items()}
    assert outcomes == {"task-a": ("solved", 1), "task-b": ("failing", 2), "task-c": ("refused", 2)}
    assert data["ladder"]["solved"] == 1 and data["ladder"]["tiers"] == ["tiny"]
    assert not any(MARKER in text for text in prompts(model_server))

    # Stored beside the attempt records, and read back the same.
    rows = RecordStore(shared_data_dir / "records.sqlite3").eval_results(data["run_id"])
    stored = EvalRun.from_rows(rows)
    assert stored is not None
    assert stored.to_json(with_results=False) == {k: v for k, v in data.items() if k != "results"}


def test_retry_gets_the_failing_output_and_recovers(
    model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path
) -> None:
    # The retry's prompt carries the hidden tests' output: the first rule only answers it.
    model_server.script({"match": "The tests failed", "reply": right("a")}, rule("a", WRONG))
    config = write_config(tmp_path / "p.toml", model_server.url, shared_data_dir)
    data = run_cli(config, write_suite(tmp_path, ("a",)))
    (result,) = data["results"]
    assert (result["outcome"], result["solved_on"], result["tries"]) == ("solved", 2, 2)
    texts = prompts(model_server)
    retry = [t for t in texts if "The tests failed" in t]
    assert retry and "assert 2 == 1" in retry[0] and "test_a" in retry[0]
    assert not any(MARKER in text for text in texts)


def test_no_retry_keeps_one_try(model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path) -> None:
    model_server.script({"match": "The tests failed", "reply": right("a")}, rule("a", WRONG))
    config = write_config(tmp_path / "p.toml", model_server.url, shared_data_dir)
    data = run_cli(config, write_suite(tmp_path, ("a",)), "--no-retry")
    assert [(r["outcome"], r["tries"]) for r in data["results"]] == [("failing", 1)]


def test_unreachable_tier_is_not_run(
    model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path
) -> None:
    model_server.script(rule("a", right("a")))
    down = f"http://127.0.0.1:{free_port()}/v1"
    config = tmp_path / "p.toml"
    config.write_text(
        f'data_dir = "{shared_data_dir}"\n'
        f'[[tiers]]\nname = "down"\nmodel = "down"\nbase_url = "{down}"\n'
        f'[[tiers]]\nname = "tiny"\nmodel = "tiny"\nbase_url = "{model_server.url}"\n'
    )
    data = run_cli(config, write_suite(tmp_path, ("a",)))
    down_row, tiny_row = data["tiers"]
    assert down_row["status"] == "not run" and "connection refused" in down_row["not_run_reason"]
    assert down_row["solved_share"] is None and down_row["solved"] == 0
    assert tiny_row["status"] == "ran" and tiny_row["solved"] == 1
    assert {r["tier"] for r in data["results"]} == {"tiny"}
    assert data["ladder"]["tiers"] == ["tiny"] and data["ladder"]["solved_share"] == 1.0

    # Only the unreachable tier asked for: nothing ran, exit 1, the table says so.
    suite = write_suite(tmp_path / "x", ("a",))
    result = runner.invoke(
        app, ["eval", "--suite-dir", str(suite), "--config", str(config), "--tiers", "down"]
    )
    assert result.exit_code == 1, result.output
    assert "not run" in result.stdout and "connection refused" in " ".join(result.stdout.split())


def test_bad_input_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t.toml").write_text('project = "."\ninstruction = "x"\n')
    cases = [
        (["--suite", "nope"], "unknown suite"),
        (["--suite-dir", str(tmp_path / "empty")], "no tasks in"),
        (["--suite-dir", str(bad)], "t.toml"),
        (["--tiers", "nope"], "unknown tier nope"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["eval", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)


def test_a_start_edit_that_does_not_apply_names_the_task(tmp_path: Path) -> None:
    tasks = write_suite(tmp_path, ("a",))
    path = tasks / "task-a.toml"
    path.write_text(path.read_text() + '[[start]]\npath = "a.py"\nsearch = "absent"\nreplace = "x"\n')
    (task,) = load_suite(tasks)
    with pytest.raises(TaskError, match=r"task-a, start: the search text occurs 0 times in a\.py"):
        task.files()


# -- what eval teaches the router ------------------------------------------------------

ADDS = ("p", "q", "r", "s", "t")


def test_eval_tries_feed_the_router(
    model_server: ScriptedModel, tmp_path: Path, shared_data_dir: Path
) -> None:
    """A tier that failed three 'add' jobs is held back; an eval in which it
    solves every 'add' task gives it a record that starts the next one there."""
    ladder = [Tier(name="learner", model="learner"), Tier(name="big", model="big")]
    store = RecordStore(shared_data_dir / "records.sqlite3")
    before = len(store.attempts())
    for n in range(3):
        store.add(
            repo="acme/app",
            instruction="add a flag",
            tier="learner",
            model="learner",
            edit_format="whole",
            tokens_in=10,
            tokens_out=5,
            latency_s=0.1,
            outcome="tests_worse",
            request_id=f"job-{n}",
            features={"kind": "add", "language": "python", "words": 3, "files": 1, "symbols": 0},
        )
    router = Router(Routing(), store)
    assert router.route(ladder, "add", "python").start == "big"

    model_server.script(*(rule(name, right(name)) for name in ADDS), rule("u", WRONG))
    config = write_config(tmp_path / "p.toml", model_server.url, shared_data_dir, ("learner",))
    adds = write_suite(tmp_path / "adds", ADDS, "Add a return of 1 to `f` in {name}.py.")
    assert run_cli(config, adds, "--no-retry")["tiers"][0]["solved"] == 5
    change = write_suite(tmp_path / "change", ("u",))
    assert run_cli(config, change, "--no-retry")["tiers"][0]["failing"] == 1

    route = router.route(ladder, "add", "python")
    assert route.start == "learner"
    assert route.reason == "verified 5/8 on 'add' in python"
    recorded = store.attempts()[before + 3 :]
    assert [(a["source"], a["kind"], a["language"], a["outcome"]) for a in recorded] == [
        *[("eval", "add", "python", "verified")] * 5,
        ("eval", "change", "python", HIDDEN_FAILED),
    ]
    assert len({a["request_id"] for a in recorded}) == 6 and all(a["tokens_in"] > 0 for a in recorded)

    # --no-record: the run is stored, the router learns nothing from it.
    data = run_cli(config, change, "--no-retry", "--no-record")
    assert store.eval_results(data["run_id"]) and len(store.attempts()) == before + 9


# -- the shipped suite ---------------------------------------------------------------

# Runs each state's tests with pytest in one process (importlib mode, the
# project's modules dropped between runs): 66 runs in seconds, not minutes.
CHECK_SCRIPT = """
import json, sys, tempfile
from pathlib import Path
import pytest
from bot.evaluation.suites import load_suite, write_tree

out = {}
for task in load_suite(Path(sys.argv[1])):
    for state, files in (("start", task.files()), ("reference", task.solution())):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_tree(root, files)
            write_tree(root, task.hidden)
            tops = {p.split("/")[0].removesuffix(".py") for p in files}
            for name in [m for m in sys.modules if m.split(".")[0] in tops | {"tests", "conftest"}]:
                del sys.modules[name]
            sys.path.insert(0, str(root))
            code = pytest.main(["-q", "-p", "no:cacheprovider", "--import-mode=importlib", str(root)])
            sys.path.remove(str(root))
            out[f"{task.name}:{state}"] = int(code)
print(json.dumps(out))
"""


def test_shipped_tasks_fail_at_start_and_pass_with_the_reference() -> None:
    tasks = load_suite(suite_dir("examples"))
    assert len(tasks) >= 30
    assert all(task.hidden and task.reference for task in tasks)
    proc = subprocess.run(
        [sys.executable, "-c", CHECK_SCRIPT, str(suite_dir("examples"))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(codes) == 2 * len(tasks)
    passing_at_start = [k for k, code in codes.items() if k.endswith(":start") and code == 0]
    failing_reference = [k for k, code in codes.items() if k.endswith(":reference") and code != 0]
    assert passing_at_start == [] and failing_reference == []


def test_hidden_tests_stay_out_of_the_starting_files() -> None:
    for task in load_suite(suite_dir("examples")):
        files = task.files()
        assert not set(task.hidden) & set(files), task.name
        assert not any(path.startswith("tests/test_hidden") for path in files), task.name
