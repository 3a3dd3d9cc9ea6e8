"""`.github/workflows/` through the App: written only when the default branch's
`.github/patchling.yml` says `allow_workflows: true`. A pull request cannot grant
itself the permission by adding that setting on its own branch."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import CALCULATOR
from tests.fakegithub import Harness, issue_comment, make_harness, open_feature_pull, review_comment
from tests.modelserver import ScriptedModel
from tests.test_app_e2e import file_at

WORKFLOW = ".github/workflows/ci.yml"
WORKFLOW_TEXT = "on: push\njobs: {}\n"
CHANGED = WORKFLOW_TEXT + "# cache pip downloads\n"


def source(tmp_path: Path, settings: str | None) -> Path:
    """The calculator with a workflow, and Patchling's settings when given."""
    src = tmp_path / "src"
    shutil.copytree(CALCULATOR, src, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (src / ".github" / "workflows").mkdir(parents=True)
    (src / WORKFLOW).write_text(WORKFLOW_TEXT)
    if settings is not None:
        (src / ".github" / "patchling.yml").write_text(settings)
    return src


def script_workflow_edit(model: ScriptedModel) -> None:
    plan = {"files": [{"path": WORKFLOW, "change": "cache pip downloads"}], "notes": "n"}
    model.script(
        {"match": "decide which files", "reply": json.dumps(plan)},
        {"match": f"What to change in {WORKFLOW}", "reply": f"```yaml\n{CHANGED}```"},
    )


def push_settings_on_branch(app: Harness, tmp_path: Path, branch: str, settings: str) -> None:
    """Commit `.github/patchling.yml` on `branch` of the remote, as a pull request would."""
    work = tmp_path / "contributor"
    subprocess.run(["git", "clone", "-q", "-b", branch, str(app.remote_path), str(work)], check=True)
    (work / ".github" / "patchling.yml").write_text(settings)
    git = ["git", "-C", str(work), "-c", "user.name=c", "-c", "user.email=c@example.com"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "Allow workflows"], check=True)
    subprocess.run([*git, "push", "-q", "origin", f"HEAD:refs/heads/{branch}"], check=True)


def test_allowed_on_the_default_branch_the_workflow_is_changed(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = make_harness(tmp_path, source(tmp_path, "allow_workflows: true\n"), model_server.url)
    script_workflow_edit(model_server)
    assert (
        app.deliver("issue_comment", issue_comment(app.repo, "/edit cache pip", number=7)).status_code == 202
    )
    assert app.run_jobs() == 1
    (pr,) = app.fake.created_pulls
    assert file_at(app.remote, pr["head"], WORKFLOW) == CHANGED


def test_a_pull_request_cannot_allow_workflows_for_itself(
    tmp_path: Path, model_server: ScriptedModel
) -> None:
    app = make_harness(tmp_path, source(tmp_path, None), model_server.url)
    pull = open_feature_pull(app)
    push_settings_on_branch(app, tmp_path, "feature", "allow_workflows: true\n")
    head = app.remote.references["refs/heads/feature"].target
    script_workflow_edit(model_server)
    data = review_comment(
        app.repo,
        "/edit cache pip",
        pull=pull,
        path=WORKFLOW,
        start_line=1,
        line=2,
        diff_hunk="@@ -1,2 +1,2 @@",
    )
    assert app.deliver("pull_request_review_comment", data).status_code == 202
    assert app.run_jobs() == 1

    assert app.remote.references["refs/heads/feature"].target == head  # nothing pushed
    assert file_at(app.remote, "feature", WORKFLOW) == WORKFLOW_TEXT
    assert app.fake.reactions_on(data["comment"]["id"]) == ["eyes", "confused"]
    posted = "\n".join(app.fake.bodies())
    assert f"{WORKFLOW}: protected" in posted
