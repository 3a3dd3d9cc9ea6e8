"""tsconfig.json read as tsc reads it (bot.tsconfig): comments and trailing
commas, `extends` by path, by list and by package under node_modules, options
merged with path options relative to the file defining them; cycles, depth and
anything outside the repository refused with a reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bot.files import text_reader
from bot.tsconfig import MAX_DEPTH, TsConfig, TsConfigError, load_tsconfig
from tests.test_index import write_tree

# As `tsc --init` writes it, with a "/*" inside a string and trailing commas.
COMMENTED = """{
  // Visit https://aka.ms/tsconfig to read more about this file
  "compilerOptions": {
    /* Modules */
    "module": "commonjs",                 /* Specify what module code is generated. */
    "rootDir": "./src",                   /* Specify the root folder within your source files. */
    // "baseUrl": "./",
    "paths": {
      "@/*": ["./src/*"],   // "/*" inside a string is no comment
    },
    "outDir": "./dist",                   /* Specify an output folder for all emitted files. */
  },
  "exclude": ["node_modules", "dist/**/*",],
}
"""


def options(**values: str) -> str:
    return json.dumps({"compilerOptions": values})


def load(root: Path, path: str = "tsconfig.json") -> TsConfig:
    return load_tsconfig(path, text_reader(root))


def test_a_commented_tsconfig_with_trailing_commas_is_read(tmp_path: Path) -> None:
    write_tree(tmp_path, {"web/tsconfig.json": COMMENTED})
    config = load(tmp_path, "web/tsconfig.json")
    assert (config.out_dir, config.root_dir, config.base_url) == ("web/dist", "web/src", None)
    # Without baseUrl, `paths` are relative to the file that defines them.
    assert config.paths == {"@/*": ["web/src/*"]}
    assert config.candidates("@/lib/x") == ["web/src/lib/x"]


def test_options_merge_along_an_extends_chain_relative_to_their_files(tmp_path: Path) -> None:
    base = {"compilerOptions": {"paths": {"#db": ["./db/index.ts"]}, "rootDir": "..", "outDir": "base-out"}}
    write_tree(
        tmp_path,
        {
            "config/tsconfig.base.json": json.dumps(base),
            "config/strict.json": '{"compilerOptions": {"outDir": "strict-out"}}',
            # A list (TypeScript 5): later entries override earlier ones; no `.json` needed.
            "apps/api/tsconfig.json": (
                '{"extends": ["../../config/tsconfig.base.json", "../../config/strict"],\n'
                ' // the extending file wins\n "compilerOptions": {"rootDir": "."}}'
            ),
        },
    )
    config = load(tmp_path, "apps/api/tsconfig.json")
    assert config.read == ("apps/api/tsconfig.json", "config/tsconfig.base.json", "config/strict.json")
    assert config.paths == {"#db": ["config/db/index.ts"]}
    assert (config.out_dir, config.root_dir) == ("config/strict-out", "apps/api")


def test_paths_of_a_base_are_read_from_the_effective_baseUrl(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "tsconfig.base.json": '{"compilerOptions": {"paths": {"~/*": ["lib/*"]}}}',
            "pkg/tsconfig.json": (
                '{"extends": "../tsconfig.base.json", "compilerOptions": {"baseUrl": "src"}}'
            ),
        },
    )
    config = load(tmp_path, "pkg/tsconfig.json")
    assert config.candidates("~/a") == ["pkg/src/lib/a", "pkg/src/~/a"]


def test_of_the_matching_paths_patterns_the_exact_then_the_longest_prefix_counts(tmp_path: Path) -> None:
    paths = {"@app/*": ["generic/*"], "@app/ui/*": ["ui/src/*"], "@app/ui": ["ui/index.ts"]}
    write_tree(tmp_path, {"tsconfig.json": json.dumps({"compilerOptions": {"paths": paths}})})
    config = load(tmp_path)
    assert config.candidates("@app/ui/button") == ["ui/src/button"]  # not generic/ui/button
    assert config.candidates("@app/ui") == ["ui/index.ts"]
    assert config.candidates("@app/core") == ["generic/core"]
    assert config.candidates("other") == []


def test_a_package_base_is_found_under_node_modules_up_the_tree(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "node_modules/@tsconfig/node20/tsconfig.json": options(rootDir="${configDir}/src"),
            "node_modules/@acme/tsconfig/tsconfig.json": options(outDir="${configDir}/out"),
            "apps/web/tsconfig.json": '{"extends": ["@tsconfig/node20/tsconfig.json", "@acme/tsconfig"]}',
        },
    )
    config = load(tmp_path, "apps/web/tsconfig.json")
    assert config.read[1:] == (
        "node_modules/@tsconfig/node20/tsconfig.json",
        "node_modules/@acme/tsconfig/tsconfig.json",
    )
    # `${configDir}` in a shared base is the directory of the config first read.
    assert (config.root_dir, config.out_dir) == ("apps/web/src", "apps/web/out")


def test_an_extends_cycle_and_a_chain_too_deep_are_refused(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "tsconfig.json": '{"extends": "./a.json"}',
            "a.json": '{"extends": "./b"}',
            "b.json": '{"extends": "./a.json"}',
        },
    )
    with pytest.raises(
        TsConfigError, match=r"tsconfig.json: an extends cycle: tsconfig.json -> a.json -> b.json -> a.json"
    ):
        load(tmp_path)
    deep = {f"c{i}.json": json.dumps({"extends": f"./c{i + 1}.json"}) for i in range(MAX_DEPTH + 1)}
    write_tree(tmp_path, {**deep, f"c{MAX_DEPTH + 1}.json": "{}"})
    with pytest.raises(TsConfigError, match=f"extends more than {MAX_DEPTH} files deep"):
        load(tmp_path, "c0.json")


@pytest.mark.parametrize(
    "extends", ["../../etc/x.json", "/etc/passwd", "@scope/../../../../etc/x.json", "./ok/../../../x.json"]
)
def test_an_extends_outside_the_checkout_is_refused(tmp_path: Path, extends: str) -> None:
    root = tmp_path / "repo"
    write_tree(tmp_path, {"etc/x.json": '{"compilerOptions": {"outDir": "leaked"}}'})
    write_tree(root, {"sub/tsconfig.json": json.dumps({"extends": extends})})
    with pytest.raises(TsConfigError, match="outside the repository"):
        load(root, "sub/tsconfig.json")


def test_an_extends_through_a_link_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_tree(tmp_path, {"outside.json": '{"compilerOptions": {"outDir": "leaked"}}'})
    write_tree(root, {"tsconfig.json": '{"extends": "./base.json"}'})
    os.symlink(tmp_path / "outside.json", root / "base.json")
    with pytest.raises(TsConfigError, match=r"'\./base\.json', which is not a readable file"):
        load(root)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"compilerOptions": {"outDir": "a" "rootDir": "b"}}', "is not valid JSON with comments"),
        ("[1, 2]", "holds no JSON object"),
        ('{"compilerOptions": {"outDir": 3}}', "compilerOptions.outDir is not a string"),
        ('{"compilerOptions": {"paths": ["a"]}}', "compilerOptions.paths is not an object"),
        ('{"extends": 1}', "extends is neither a path nor a list of paths"),
        ('{"extends": "./missing"}', "extends './missing', which is not a readable file"),
    ],
)
def test_a_malformed_tsconfig_gets_a_reason(tmp_path: Path, text: str, reason: str) -> None:
    write_tree(tmp_path, {"tsconfig.json": text})
    with pytest.raises(TsConfigError, match=reason):
        load(tmp_path)
    with pytest.raises(TsConfigError, match=r"other\.json cannot be read"):
        load(tmp_path, "other.json")
