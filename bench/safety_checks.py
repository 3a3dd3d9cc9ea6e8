"""The checks the safety bench puts beside each edit, as `safety_checks/check.py`.

It runs inside the case's repository (standard library only, no pytest: a plain script starts
in a fraction of pytest's time) and reads `spec.json` beside it: the edited file's path and its
text before and after the edit. One check per region of the edit, compared as text, comments
and blank lines included:

  kept:L<a>-<b>    lines a..b of "after" that the edit left alone are still there, together
  change:L<a>-<b>  the lines the edit wrote at a..b are there, with the line on either side
  removed:after-L<a>  the lines the edit removed after line a are gone: the unchanged
                   lines either side of them now meet

Before the edit every `kept` check passes and every `change` and `removed` check fails; after it, all pass.
Any answer that drops, cuts, re-indents or rewrites a line the edit left alone fails a `kept`
check that passed before, so the engine sees the tests get worse. The bench imports
`failures` to ask whether the checks can tell a file from the edit's result.

Output follows pytest's summary ("FAILED <name>", "2 failed, 5 passed"), which the engine reads.
"""

from __future__ import annotations

import difflib
import json
import pathlib
import sys


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def checks(before: str, after: str) -> list[tuple[str, str]]:
    """(name, text that must stand as whole lines in the file), per region of the edit."""
    old, new = _lines(before), _lines(after)
    ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    found = []
    for k, (tag, _i1, _i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            found.append((f"kept:L{j1 + 1}-{j2}", "".join(new[j1:j2])))
        elif j2 > j1:
            # One line of context each side anchors the change where it belongs.
            found.append((f"change:L{j1 + 1}-{j2}", "".join(new[max(0, j1 - 1) : j2 + 1])))
        else:
            # The kept runs either side, whole: one line of context can recur (a blank line).
            first = ops[k - 1][3] if k else j1
            last = ops[k + 1][4] if k + 1 < len(ops) else j2
            found.append((f"removed:after-L{j1}", "".join(new[first:last])))
    return found


def present(block: str, text: str) -> bool:
    """`block` stands in `text` as whole lines (it starts at a line's start)."""
    if not block:
        return True
    return ("\n" + block) in ("\n" + text)


def failures(before: str, after: str, current: str) -> list[str]:
    """The names of the checks `current` fails."""
    return [name for name, block in checks(before, after) if not present(block, current)]


def main() -> int:
    here = pathlib.Path(__file__).parent
    spec = json.loads((here / "spec.json").read_text(encoding="utf-8"))
    target = here.parent / spec["path"]
    current = target.read_bytes().decode("utf-8", "replace") if target.is_file() else ""
    failed = failures(spec["before"], spec["after"], current)
    for name in failed:
        print(f"FAILED {name}")
    total = len(checks(spec["before"], spec["after"]))
    print(f"{len(failed)} failed, {total - len(failed)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
