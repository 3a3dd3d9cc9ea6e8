"""What the index records about a file's definitions and imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SymbolKind = Literal["function", "class", "method", "variable", "section"]


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    qualname: str  # "Class.method"
    kind: SymbolKind
    start_line: int  # 1-based, first decorator line included
    end_line: int  # 1-based, inclusive
    signature: str  # the def/class line as written, stripped
    doc: str = ""  # first line of the docstring
    header_end: int = 0  # last line of the header (the one with the colon)
    body_col: int = 0  # indentation of the body, for `...` in skeletons
    one_line: bool = False  # `def f(): pass`: the header line holds the body
    # Other languages: the line the definition itself starts on, after its doc comment and
    # attributes (0: Python's rule, the `def`/`class` line after the decorators) ...
    def_line: int = 0
    # ... and whether its last line closes the body (`}`, `end`), kept in skeletons.
    closer: bool = False


@dataclass(frozen=True, slots=True)
class ImportRef:
    """An import statement as written: `from <module> import <names>` at `level`."""

    module: str | None
    names: tuple[str, ...] = ()
    level: int = 0
    is_from: bool = True
