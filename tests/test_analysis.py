"""Language analysis beyond Python: tree-sitter tag queries give definitions with
spans, headers and doc comments; imports resolve to files; skeletons keep the
file's own syntax."""

from pathlib import Path

import pytest

from bot.analysis import analyse
from bot.context import outline
from bot.imports import expand_use_tree
from bot.index import build_index
from bot.symbols import Symbol
from bot.tags import LANGUAGES as TAGGED
from bot.tags import TagQueryError, tag_query

GO = """package echo

import (
\t"fmt"
)

// Echo is the framework instance.
//
// More about it.
type Echo struct {
\tName string
}

// Add registers a route.
func (e *Echo) Add(method string) *Route {
\treturn nil
}

const Version = "4"
"""

TS = """import { compose } from './compose'

/**
 * The app.
 */
export class Hono {
  /** Adds a route. */
  get = (path: string) => {
    return this
  }

  fetch(req: Request): Response {
    return new Response()
  }
}

export function helper(a: number): number {
  return a
}
"""

RUST = """mod routing;
use crate::{extract::Path, body::Body};

/// A router.
#[derive(Debug)]
pub struct Router {
    inner: u8,
}

impl Router {
    /// Make one.
    pub fn new() -> Self {
        todo!()
    }
}
"""

JAVA = """package a.b;

import a.c.Util;

/** A widget. */
public class Widget {
    // Sizes it.
    public int size(int x) {
        return x;
    }
}
"""

CSHARP = """/// <summary>A thing.</summary>
public class Thing {
    public int Count(int x) {
        return x;
    }
}
"""

RUBY = """require_relative 'helper'

# A shape.
class Shape
  # Its area.
  def area(x)
    x * x
  end
end
"""

C = """#include "util.h"

/* Adds two numbers. */
static int add(int a, int b) {
    return a + b;
}

typedef struct {
    int x;
} Point;
"""

CPP = """// A counter.
class Counter {
public:
    int next() {
        return ++n;
    }
};
"""


def facts(symbols: list[Symbol]) -> list[tuple[str, str, str, int, int, int, str]]:
    return [(s.qualname, s.kind, s.signature, s.start_line, s.def_line, s.end_line, s.doc) for s in symbols]


CASES = {
    ("go", "echo.go", GO): [
        ("Echo", "class", "type Echo struct {", 7, 10, 12, "Echo is the framework instance."),
        (
            "Add",
            "function",
            "func (e *Echo) Add(method string) *Route {",
            14,
            15,
            17,
            "Add registers a route.",
        ),
        ("Version", "variable", 'const Version = "4"', 19, 19, 19, ""),
    ],
    ("typescript", "src/hono.ts", TS): [
        ("Hono", "class", "export class Hono {", 3, 6, 15, "The app."),
        ("Hono.get", "method", "get = (path: string) => {", 7, 8, 10, "Adds a route."),
        ("Hono.fetch", "method", "fetch(req: Request): Response {", 12, 12, 14, ""),
        ("helper", "function", "export function helper(a: number): number {", 17, 17, 19, ""),
    ],
    ("rust", "src/lib.rs", RUST): [
        ("Router", "class", "pub struct Router {", 4, 6, 8, "A router."),
        ("Router", "class", "impl Router {", 10, 10, 15, ""),
        ("Router.new", "method", "pub fn new() -> Self {", 11, 12, 14, "Make one."),
    ],
    ("java", "src/a/b/Widget.java", JAVA): [
        ("Widget", "class", "public class Widget {", 5, 6, 11, "A widget."),
        ("Widget.size", "method", "public int size(int x) {", 7, 8, 10, "Sizes it."),
    ],
    ("csharp", "Thing.cs", CSHARP): [
        ("Thing", "class", "public class Thing {", 1, 2, 6, "<summary>A thing.</summary>"),
        ("Thing.Count", "method", "public int Count(int x) {", 3, 3, 5, ""),
    ],
    ("ruby", "shape.rb", RUBY): [
        ("Shape", "class", "class Shape", 3, 4, 9, "A shape."),
        ("Shape.area", "method", "def area(x)", 5, 6, 8, "Its area."),
    ],
    ("c", "add.c", C): [
        ("add", "function", "static int add(int a, int b) {", 3, 4, 6, "Adds two numbers."),
        ("Point", "class", "typedef struct {", 8, 8, 10, ""),
    ],
    ("cpp", "counter.hpp", CPP): [
        ("Counter", "class", "class Counter {", 1, 2, 7, "A counter."),
        ("Counter.next", "method", "int next() {", 4, 4, 6, ""),
    ],
}


@pytest.mark.parametrize(("case", "expected"), list(CASES.items()), ids=[c[0] for c in CASES])
def test_definitions_with_spans_signatures_and_docs(
    case: tuple[str, str, str], expected: list[tuple[str, str, str, int, int, int, str]]
) -> None:
    language, path, text = case
    analysis = analyse(text, language, path)
    assert analysis.parsed
    assert facts(analysis.symbols) == expected


def test_imports_as_written() -> None:
    assert [r.module for r in analyse(GO, "go", "echo.go").raw_imports] == ["fmt"]
    assert [(r.module, r.level) for r in analyse(RUST, "rust", "src/lib.rs").raw_imports] == [
        ("routing", 1),
        ("crate::{extract::Path, body::Body}", 0),
    ]
    assert [(r.module, r.level) for r in analyse(RUBY, "shape.rb").raw_imports] == []  # not Ruby by name
    assert [(r.module, r.level) for r in analyse(RUBY, "ruby", "shape.rb").raw_imports] == [("helper", 1)]


def test_import_lines_do_not_count_as_the_files_words() -> None:
    terms = analyse(TS, "typescript", "src/hono.ts").terms
    assert "compos" not in terms and "hono" in terms


def test_use_trees_expand() -> None:
    assert expand_use_tree("crate::{a::B, c::{D, self}, e as f}") == [
        "crate::a::B",
        "crate::c::D",
        "crate::c",
        "crate::e",
    ]


def test_go_skeleton_in_go_syntax() -> None:
    symbols = analyse(GO, "go", "echo.go").symbols
    assert outline(GO.splitlines(), symbols, 0) == (
        "// Echo is the framework instance.\ntype Echo struct {\n\t…\n}\n"
        "// Add registers a route.\nfunc (e *Echo) Add(method string) *Route {\n\t…\n}\n"
    )
    assert outline(GO.splitlines(), symbols, 2) == (
        "type Echo struct {\nfunc (e *Echo) Add(method string) *Route {\n"
    )


def test_typescript_skeleton_and_span_in_typescript_syntax() -> None:
    lines = TS.splitlines()
    symbols = analyse(TS, "typescript", "src/hono.ts").symbols
    assert outline(lines, symbols, 1) == (
        "export class Hono {\n  get = (path: string) => {\n    …\n  }\n"
        "  fetch(req: Request): Response {\n    …\n  }\n}\n"
        "export function helper(a: number): number {\n  …\n}\n"
    )
    # A method in full keeps its class's header and closing brace around it.
    assert outline(lines, symbols, 4, [(12, 14)]) == (
        "export class Hono {\n  fetch(req: Request): Response {\n    return new Response()\n  }\n}\n"
    )


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_typescript_relative_index_and_tsconfig_path_imports(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "tsconfig.json": (
                '{\n  // paths\n  "compilerOptions": {"baseUrl": ".", "paths": {"@/*": ["src/*"]},},\n}\n'
            ),
            "src/app.ts": (
                "import { a } from './utils'\nimport b from '@/lib/b'\n"
                "export * from './c.js'\nimport x from 'react'\n"
            ),
            "src/utils/index.ts": "export const a = 1\n",
            "src/lib/b.tsx": "export default 1\n",
            "src/c.ts": "export const c = 1\n",
        },
    )
    index = build_index(root)
    assert index.files["src/app.ts"].imports == ["src/c.ts", "src/lib/b.tsx", "src/utils/index.ts"]


def test_typescript_paths_of_an_extended_tsconfig_resolve_imports(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "tsconfig.base.json": (
                '{\n  "compilerOptions": {"paths": {"@lib/*": ["./packages/lib/src/*"],},},\n}\n'
            ),
            "apps/web/tsconfig.json": '{"extends": "../../tsconfig.base.json", /* own options */ }',
            "apps/web/main.ts": "import { b } from '@lib/b'\n",
            "packages/lib/src/b.ts": "export const b = 1\n",
        },
    )
    assert build_index(root).files["apps/web/main.ts"].imports == ["packages/lib/src/b.ts"]


def test_go_imports_reach_every_file_of_the_package(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "go.mod": "module github.com/acme/app\n\ngo 1.22\n",
            "main.go": 'package main\n\nimport (\n\t"fmt"\n\t"github.com/acme/app/store"\n)\n',
            "store/a.go": "package store\n",
            "store/b.go": "package store\n",
            "store/a_test.go": "package store\n",
        },
    )
    assert build_index(root).files["main.go"].imports == ["store/a.go", "store/b.go"]


def test_rust_mod_and_use_per_crate_in_a_workspace(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "Cargo.toml": '[package]\nname = "top"\n[workspace]\nmembers = ["app", "app-core"]\n',
            "src/main.rs": "mod cli;\n",  # the root's own crate
            "src/cli.rs": "pub fn run() {}\n",
            "app/Cargo.toml": '[package]\nname = "app"\n',
            "app/src/lib.rs": "mod routing;\nuse crate::extract::Path;\nuse app_core::body::Body;\n",
            "app/src/routing/mod.rs": "use super::extract::{self, Path};\nmod route;\n",
            "app/src/routing/route.rs": "pub struct Route;\n",
            "app/src/extract.rs": "pub struct Path;\n",
            "app-core/Cargo.toml": '[package]\nname = "app-core"\n',
            "app-core/src/lib.rs": "pub mod body;\n",
            "app-core/src/body.rs": "pub struct Body;\n",
        },
    )
    files = build_index(root).files
    assert files["app/src/lib.rs"].imports == [
        "app-core/src/body.rs",
        "app/src/extract.rs",
        "app/src/routing/mod.rs",
    ]
    assert files["app/src/routing/mod.rs"].imports == ["app/src/extract.rs", "app/src/routing/route.rs"]
    assert files["app-core/src/lib.rs"].imports == ["app-core/src/body.rs"]
    assert files["src/main.rs"].imports == ["src/cli.rs"]


def test_java_class_and_package_imports(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "src/main/java/a/App.java": (
                "package a;\nimport a.c.Util;\nimport static a.c.Util.max;\nimport a.d.*;\n"
            ),
            "src/main/java/a/c/Util.java": "package a.c;\nclass Util {}\n",
            "src/main/java/a/d/One.java": "package a.d;\nclass One {}\n",
            "src/main/java/a/d/Two.java": "package a.d;\nclass Two {}\n",
        },
    )
    assert build_index(root).files["src/main/java/a/App.java"].imports == [
        "src/main/java/a/c/Util.java",
        "src/main/java/a/d/One.java",
        "src/main/java/a/d/Two.java",
    ]


def test_c_include_and_ruby_require_relative(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "src/add.c": C,
            "include/util.h": "int util(void);\n",
            "lib/shape.rb": RUBY,
            "lib/helper.rb": "module Helper; end\n",
        },
    )
    files = build_index(root).files
    assert files["src/add.c"].imports == ["include/util.h"]
    assert files["lib/shape.rb"].imports == ["lib/helper.rb"]


def test_missing_query_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TagQueryError, match=r"tag query for go unreadable: .*go\.scm"):
        tag_query("go", tmp_path)


def test_broken_query_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "rust.scm").write_text("(function_item name: (no_such_node) @name) @definition.function\n")
    with pytest.raises(TagQueryError, match=r"tag query .*rust\.scm is broken"):
        tag_query("rust", tmp_path)


def test_every_tagged_language_has_a_query_that_compiles() -> None:
    for grammar in (*TAGGED, "tsx"):
        assert tag_query(grammar).pattern_count > 0
