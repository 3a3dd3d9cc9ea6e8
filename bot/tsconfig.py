"""A tsconfig.json read as tsc reads it, for the options Patchling uses:
`compilerOptions.baseUrl` and `paths` (import resolution, bot/imports.py) and
`outDir` and `rootDir` (where tsc writes a test, bot/runners.py).

The file is JSON with comments and trailing commas. `extends` (a path or, since
TypeScript 5.0, a list of them) is followed: a relative path from the extending
file's directory, a package name through `node_modules/` in this directory or one
above it. Options merge as tsc merges them: later bases override earlier ones and
the extending file overrides them all; a path option is relative to the file that
defines it (`${configDir}` stands for the directory of the config first read).
Nothing outside the repository is read: every file is a repository path, judged
by `bot.files.clean_path`, and read through the caller's reader, which refuses
links (see `bot.files.text_reader`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyjson5

from bot.files import PathRefused, clean_path

# The text of a repository path, or None when it is missing or may not be read.
Reader = Callable[[str], str | None]
# A config file found: its repository path and its text (None: unreadable).
Found = tuple[str, str | None]

# Deeper chains are a mistake or a trap (each base is one more file read).
MAX_DEPTH = 16
_PATH_OPTIONS = ("baseUrl", "outDir", "rootDir")
_CONFIG_DIR = "${configDir}"


class TsConfigError(ValueError):
    """Why a tsconfig could not be read (the message names the file)."""


@dataclass(frozen=True)
class TsConfig:
    """The options of one tsconfig after `extends`, paths relative to the
    repository root ("" for the root itself)."""

    path: str
    read: tuple[str, ...]  # every file read: the config, then the ones it extends
    base_url: str | None
    paths: dict[str, list[str]]  # pattern -> targets, each placed in the repository
    out_dir: str | None
    root_dir: str | None

    def candidates(self, spec: str) -> list[str]:
        """Where a non-relative import may lie, by `paths` then `baseUrl`
        (without extensions: the caller tries those). As tsc: of the `paths`
        patterns, an exact one, else the matching one with the longest prefix."""
        found: list[str] = []
        pattern = self._pattern_for(spec)
        if pattern is not None:
            prefix, star, suffix = pattern.partition("*")
            middle = spec[len(prefix) : len(spec) - len(suffix)]
            found.extend(t.replace("*", middle, 1) if star else t for t in self.paths[pattern])
        if self.base_url is not None:
            found.append(_join(self.base_url, spec))
        return found

    def _pattern_for(self, spec: str) -> str | None:
        if spec in self.paths and "*" not in spec:
            return spec
        matching = [p for p in self.paths if "*" in p and _matches(p, spec)]
        return max(matching, key=lambda p: len(p.partition("*")[0]), default=None)


def _matches(pattern: str, spec: str) -> bool:
    prefix, _, suffix = pattern.partition("*")
    return len(spec) >= len(prefix) + len(suffix) and spec.startswith(prefix) and spec.endswith(suffix)


def load_tsconfig(path: str, read: Reader) -> TsConfig:
    """The tsconfig at repository path `path`; TsConfigError says why not."""
    leaf = _dir(path)
    options: dict[str, tuple[Any, str]] = {}  # name -> (value, directory of the file defining it)
    files: list[str] = []
    _merge((path, read(path)), read, (), options, files)
    placed = {k: _place(v, d, leaf) for k, (v, d) in options.items() if k in _PATH_OPTIONS}
    paths, paths_dir = options.get("paths", ({}, leaf))
    # tsc reads `paths` from baseUrl when one is set, else from the file defining them.
    targets_dir = placed.get("baseUrl", paths_dir)
    return TsConfig(
        path,
        tuple(files),
        placed.get("baseUrl"),
        {k: [_place(t, targets_dir, leaf) for t in v] for k, v in paths.items()},
        placed.get("outDir"),
        placed.get("rootDir"),
    )


def _merge(
    found: Found, read: Reader, chain: tuple[str, ...], into: dict[str, tuple[Any, str]], files: list[str]
) -> None:
    """Adds the options of a file (its path and text) and its bases to `into`, bases first."""
    path, text = found
    if path in chain:
        raise TsConfigError(f"{chain[0]}: an extends cycle: {' -> '.join((*chain, path))}")
    if len(chain) >= MAX_DEPTH:
        raise TsConfigError(f"{chain[0]} extends more than {MAX_DEPTH} files deep")
    raw = _parse(path, text)
    files.append(path)
    for base in _extends(path, raw, read):
        _merge(base, read, (*chain, path), into, files)
    into.update((name, (value, _dir(path))) for name, value in _options(path, raw).items())


def _parse(path: str, text: str | None) -> dict[str, Any]:
    if text is None:
        raise TsConfigError(f"{path} cannot be read (missing, a link, or not UTF-8)")
    try:
        raw = pyjson5.loads(text)
    except pyjson5.Json5Exception as exc:
        raise TsConfigError(f"{path} is not valid JSON with comments: {exc.args[0]}") from None
    if not isinstance(raw, dict):
        raise TsConfigError(f"{path} holds no JSON object")
    return raw


def _options(path: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The options read here, of the right types (tsc stops at a wrong one too)."""
    options = raw.get("compilerOptions", {})
    if not isinstance(options, dict):
        raise TsConfigError(f"{path}: compilerOptions is not an object")
    for name in _PATH_OPTIONS:
        if name in options and not isinstance(options[name], str):
            raise TsConfigError(f"{path}: compilerOptions.{name} is not a string")
    kept = {name: options[name] for name in _PATH_OPTIONS if name in options}
    if "paths" in options:
        kept["paths"] = _paths(path, options["paths"])
    return kept


def _paths(path: str, value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise TsConfigError(f"{path}: compilerOptions.paths is not an object")
    return {k: [t for t in v if isinstance(t, str)] for k, v in value.items() if isinstance(v, list)}


def _extends(path: str, raw: dict[str, Any], read: Reader) -> list[Found]:
    value = raw.get("extends", [])
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise TsConfigError(f"{path}: extends is neither a path nor a list of paths")
    return [_base(path, name, read) for name in names]


def _base(path: str, name: str, read: Reader) -> Found:
    """The repository path and text of the file `path` extends by `name` (read once)."""
    for candidate in _base_candidates(path, name):
        if (text := read(candidate)) is not None:
            return candidate, text
    raise TsConfigError(f"{path} extends {name!r}, which is not a readable file in the repository")


def _base_candidates(path: str, name: str) -> Iterator[str]:
    """Where tsc looks for `name`: a path as written, then with `.json`; a
    package under each node_modules from the file's directory up to the root."""
    package = not _is_path(name)
    places = [_join(d, "node_modules") for d in _ancestors(_dir(path))] if package else [_dir(path)]
    for place in places:
        base = _inside(path, name, place)
        yield base
        if not base.endswith(".json"):
            yield base + ".json"
            if package:
                yield base + "/tsconfig.json"


def _is_path(name: str) -> bool:
    return name.startswith(("./", "../", "/")) or name in (".", "..") or name[1:3] in (":/", ":\\")


def _inside(path: str, name: str, place: str) -> str:
    """`name` joined to `place`; TsConfigError when that leaves the repository."""
    if name.startswith("/") or name[1:3] in (":/", ":\\"):
        raise TsConfigError(f"{path} extends {name!r}, outside the repository")
    try:
        return clean_path(_join(place, name))
    except PathRefused:
        raise TsConfigError(f"{path} extends {name!r}, outside the repository") from None


def _ancestors(directory: str) -> Iterator[str]:
    while True:
        yield directory
        if not directory:
            return
        directory = _dir(directory)


def _place(value: str, directory: str, leaf: str) -> str:
    """A path option's value as a repository path: `${configDir}` is the
    directory of the config first read, anything else is relative to `directory`."""
    if value.startswith(_CONFIG_DIR):
        return _join(leaf, "./" + value.removeprefix(_CONFIG_DIR))
    return _join(directory, value)


def _dir(path: str) -> str:
    return posixpath.dirname(path)


def _join(*parts: str) -> str:
    joined = posixpath.normpath(posixpath.join(*parts))
    return "" if joined == "." else joined
