"""Imports of the languages beyond Python, resolved to repository files, so
ranking can spread along the import graph.

Each language's rule is the one its toolchain applies, as far as a file
listing and the project's own configuration tell it: TypeScript/JavaScript
relative specifiers (with extension and `index` resolution) and `tsconfig.json`
`baseUrl`/`paths`; Go packages under `go.mod`'s module path (an import names
every file of the package's directory); Rust `mod x;` and `use crate::…`,
`self::`, `super::` and the workspace's other crates, per crate; Java classes and
packages by their directories; C/C++ `#include "…"`; Ruby `require_relative`.
Anything else (packages from a registry, the standard library) resolves to nothing.
"""

from __future__ import annotations

import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from functools import cached_property

from bot.symbols import ImportRef
from bot.tsconfig import TsConfig, TsConfigError, load_tsconfig

Reader = Callable[[str], str | None]

TS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs")
_JS_LANGUAGES = frozenset({"javascript", "typescript"})
_GO_MODULE_RE = re.compile(r"^\s*module\s+(\S+)", re.MULTILINE)
# The files whose content (not only whose presence) the rules below read: when one
# changes, every file's imports are resolved again. A tsconfig's bases count too,
# by the names they usually have (tsconfig.base.json, tsconfig.build.json, …).
CONFIG_FILES = frozenset({"go.mod", "Cargo.toml"})
TSCONFIG_NAMES = "*tsconfig*.json"


def go_module(go_mod: str) -> str | None:
    """The module path a go.mod's `module` line declares, or None."""
    found = _GO_MODULE_RE.search(go_mod)
    return found.group(1).strip('"') if found else None


def configures_imports(path: str) -> bool:
    """Whether `path` is one of the files the resolution rules read."""
    name = posixpath.basename(path)
    return name in CONFIG_FILES or fnmatchcase(name, TSCONFIG_NAMES)


def _dir(path: str) -> str:
    return posixpath.dirname(path)


def _join(*parts: str) -> str:
    return posixpath.normpath(posixpath.join(*parts)).removeprefix("./")


def _sources(crate: str) -> str:
    """A crate's `src` directory (crates are listed directories: no normalising needed)."""
    return f"{crate}/src" if crate else "src"


def common_prefix(a: str, b: str) -> int:
    """How many leading directories two paths share."""
    n = 0
    for x, y in zip(a.split("/"), b.split("/"), strict=False):
        if x != y:
            break
        n += 1
    return n


class Resolver:
    """Resolves the imports of one repository's files (path -> language, refs)."""

    def __init__(self, files: Mapping[str, tuple[str, list[ImportRef]]], read: Reader) -> None:
        self.files = files
        self.paths = set(files)
        self.read = read

    def resolve(self, path: str) -> list[str]:
        language, refs = self.files[path]
        rule = {
            "javascript": self._js,
            "typescript": self._js,
            "go": self._go,
            "rust": self._rust,
            "java": self._java,
            "c": self._include,
            "cpp": self._include,
            "ruby": self._ruby,
        }.get(language)
        if rule is None:
            return []
        found = {target for ref in refs if ref.module for target in rule(path, ref)}
        found.discard(path)
        return sorted(found)

    # ----------------------------------------------------------------- TS/JS

    def _js(self, path: str, ref: ImportRef) -> list[str]:
        spec = ref.module or ""
        if spec.startswith("."):
            hit = self._js_file(_join(_dir(path), spec))
            return [hit] if hit else []
        config = self._tsconfig_for(path)
        if config is None:
            return []
        for base in config.candidates(spec):
            hit = self._js_file(base)
            if hit:
                return [hit]
        return []

    def _js_file(self, base: str) -> str | None:
        """`./x` -> x.ts, x.tsx, …, x/index.ts, …; `./x.js` may be written for x.ts."""
        stem = base
        for ext in (".js", ".jsx", ".mjs", ".cjs"):
            if base.endswith(ext):
                stem = base.removesuffix(ext)
                break
        candidates = [base, *(stem + e for e in TS_EXTENSIONS), *(f"{base}/index{e}" for e in TS_EXTENSIONS)]
        return next((c for c in candidates if c in self.paths), None)

    def _tsconfig_for(self, path: str) -> TsConfig | None:
        directory = _dir(path)
        while True:
            config = self._tsconfigs.get(directory)
            if config is not None:
                return config
            if not directory:
                return None
            directory = _dir(directory)

    @cached_property
    def _tsconfigs(self) -> dict[str, TsConfig]:
        """Each directory's tsconfig.json; one tsc could not read resolves nothing."""
        configs: dict[str, TsConfig] = {}
        for p in self.paths:
            if posixpath.basename(p) == "tsconfig.json":
                try:
                    configs[_dir(p)] = load_tsconfig(p, self.read)
                except TsConfigError:
                    continue
        return configs

    # -------------------------------------------------------------------- Go

    def _go(self, path: str, ref: ImportRef) -> list[str]:
        spec = ref.module or ""
        for module, directory in self._go_modules:
            if spec == module or spec.startswith(module + "/"):
                package = _join(directory, spec[len(module) + 1 :]) if spec != module else directory
                return self._go_packages.get(package.strip("."), [])
        return []

    @cached_property
    def _go_modules(self) -> list[tuple[str, str]]:
        """(module path, directory) of every go.mod, the longest module path first."""
        modules: list[tuple[str, str]] = []
        for p in self.paths:
            if posixpath.basename(p) == "go.mod":
                module = go_module(self.read(p) or "")
                if module:
                    modules.append((module, _dir(p)))
        return sorted(modules, key=lambda m: -len(m[0]))

    @cached_property
    def _go_packages(self) -> dict[str, list[str]]:
        packages: dict[str, list[str]] = {}
        for p, (language, _) in self.files.items():
            if language == "go" and not p.endswith("_test.go"):
                packages.setdefault(_dir(p), []).append(p)
        return packages

    # ------------------------------------------------------------------ Rust

    def _rust(self, path: str, ref: ImportRef) -> list[str]:
        crate = self._crate_of(path)
        if crate is None:
            return []
        here = _rust_module_path(path, crate)
        if ref.level:  # `mod x;`
            hit = self._rust_module_file(crate, [*here, ref.module or ""])
            return [hit] if hit else []
        found = []
        for use in expand_use_tree(ref.module or ""):
            hit = self._rust_use(crate, here, use.split("::"))
            if hit:
                found.append(hit)
        return found

    def _rust_use(self, crate: str, here: list[str], segments: list[str]) -> str | None:
        head, rest = segments[0], segments[1:]
        if head == "crate":
            base: list[str] = []
        elif head == "self":
            base = here
        elif head == "super":
            base = here
            while segments and segments[0] == "super":
                base, segments = base[:-1], segments[1:]
            rest = segments
        elif head in self._crates_by_name:
            crate, base = self._crates_by_name[head], []
        else:
            base, rest = here, segments  # a module declared beside this one
        for k in range(len(rest), -1, -1):
            hit = self._rust_module_file(crate, base + rest[:k])
            if hit:
                return hit
        return None

    def _rust_module_file(self, crate: str, module: list[str]) -> str | None:
        src = _sources(crate)
        if not module:
            candidates = [f"{src}/lib.rs", f"{src}/main.rs"]
        else:
            stem = "/".join([src, *module])
            candidates = [f"{stem}.rs", f"{stem}/mod.rs"]
        return next((c for c in candidates if c in self.paths), None)

    def _crate_of(self, path: str) -> str | None:
        """The innermost crate whose `src/` holds `path`: its directories looked up
        from the deepest (a scan of every crate per import was quadratic)."""
        here = _dir(path)
        while here:
            crate = self._crate_sources.get(here)
            if crate is not None:
                return crate
            here = _dir(here)
        return None

    @cached_property
    def _crate_sources(self) -> dict[str, str]:
        return {_sources(crate): crate for crate in self._crates}

    @cached_property
    def _crates(self) -> list[str]:
        return [_dir(p) for p in self.paths if posixpath.basename(p) == "Cargo.toml"]

    @cached_property
    def _crates_by_name(self) -> dict[str, str]:
        """The workspace's crates by the name `use` spells (`axum-core` -> `axum_core`)."""
        names: dict[str, str] = {}
        for crate in self._crates:
            try:
                manifest = tomllib.loads(self.read(_join(crate, "Cargo.toml")) or "")
            except tomllib.TOMLDecodeError:
                continue
            name = manifest.get("package", {}).get("name")
            if isinstance(name, str):
                names[name.replace("-", "_")] = crate
        return names

    # ------------------------------------------------------------------ Java

    def _java(self, path: str, ref: ImportRef) -> list[str]:
        words = (ref.module or "").removeprefix("import").removesuffix(";").split()
        dotted = [w for w in words if w != "static"][-1:] or [""]
        parts = dotted[0].split(".")
        if parts[-1] == "*":
            return self._java_packages.get("/".join(parts[:-1]), [])
        for k in range(len(parts), 1, -1):  # `import static a.b.C.m`: the class is a prefix
            hits = self._java_classes.get("/".join(parts[:k]))
            if hits:
                return [min(hits, key=lambda h: (-common_prefix(h, path), h))]
        return []

    @cached_property
    def _java_classes(self) -> dict[str, list[str]]:
        classes: dict[str, list[str]] = {}
        for p in self._java_files:
            for suffix in _suffixes(p.removesuffix(".java")):
                classes.setdefault(suffix, []).append(p)
        return classes

    @cached_property
    def _java_packages(self) -> dict[str, list[str]]:
        packages: dict[str, list[str]] = {}
        for p in self._java_files:
            for suffix in _suffixes(_dir(p)):
                packages.setdefault(suffix, []).append(p)
        return packages

    @cached_property
    def _java_files(self) -> list[str]:
        return sorted(p for p, (language, _) in self.files.items() if language == "java")

    # --------------------------------------------------------- C/C++, Ruby

    def _include(self, path: str, ref: ImportRef) -> list[str]:
        return self._relative_or_anywhere(path, ref.module or "", "")

    def _ruby(self, path: str, ref: ImportRef) -> list[str]:
        spec = ref.module or ""
        if ref.level:
            hit = _join(_dir(path), spec if spec.endswith(".rb") else spec + ".rb")
            return [hit] if hit in self.paths else []
        return self._relative_or_anywhere(path, spec, ".rb", relative=False)

    def _relative_or_anywhere(self, path: str, spec: str, ext: str, relative: bool = True) -> list[str]:
        """Beside the importing file first, then any file whose path ends so (an include path)."""
        name = spec if not ext or spec.endswith(ext) else spec + ext
        if relative and _join(_dir(path), name) in self.paths:
            return [_join(_dir(path), name)]
        hits = self._by_tail.get(name.lstrip("./"), [])
        return [min(hits, key=lambda h: (-common_prefix(h, path), h))] if hits else []

    @cached_property
    def _by_tail(self) -> dict[str, list[str]]:
        return _by_suffix(self.paths)


def _suffixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


def _by_suffix(paths: Iterable[str]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for p in sorted(paths):
        for suffix in _suffixes(p):
            index.setdefault(suffix, []).append(p)
    return index


def _rust_module_path(path: str, crate: str) -> list[str]:
    rel = path.removeprefix(_sources(crate) + "/").removeprefix("src/").removesuffix(".rs")
    parts = rel.split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def expand_use_tree(tree: str) -> list[str]:
    """`crate::{a::B, c::{D, self}}` -> crate::a::B, crate::c::D, crate::c
    (aliases dropped: `x as y` is x)."""
    tree = re.sub(r"\s+as\s+\w+", "", re.sub(r"\s+", " ", tree)).strip()
    if "{" not in tree:
        return [tree.removesuffix("::*")]
    head, _, inner = tree.partition("{")
    inner = inner[: inner.rfind("}")]
    out: list[str] = []
    for part in _split_top_level(inner):
        part = part.strip()
        if part == "self":
            out.append(head.removesuffix("::"))
        elif part:
            out.extend(head + sub for sub in expand_use_tree(part))
    return out


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]
