"""Command line: `slug TEXT...`, `count` (reads stdin)."""

import sys
from typing import TextIO

from textkit.slug import slugify
from textkit.stats import word_count

USAGE = "usage: textkit slug TEXT... | textkit count"


def main(argv: list[str], stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    if not argv:
        print(USAGE, file=stdout)
        return 2
    command, args = argv[0], argv[1:]
    if command == "slug" and args:
        print(slugify(" ".join(args)), file=stdout)
        return 0
    if command == "count":
        print(word_count(stdin.read()), file=stdout)
        return 0
    print(USAGE, file=stdout)
    return 2
