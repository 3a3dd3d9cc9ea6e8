"""How prompts name a file's language and fence its text: "Go" and ```go,
"TypeScript" and ```typescript (```tsx for .tsx), so a small model reads and
writes the file in its own syntax. Words from fixed tables only: never text
from the repository or the request."""

from __future__ import annotations

from pathlib import PurePosixPath

from bot.index import language_of

# bot.index's language names -> how people write them.
NAMES = {
    "python": "Python",
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "go": "Go",
    "rust": "Rust",
    "java": "Java",
    "kotlin": "Kotlin",
    "ruby": "Ruby",
    "php": "PHP",
    "c": "C",
    "cpp": "C++",
    "csharp": "C#",
    "swift": "Swift",
    "shell": "shell",
    "markdown": "Markdown",
}
# Fence tags that differ from the language's name (Markdown's common spellings).
TAGS = {"shell": "sh"}
# Suffixes whose tag says more than their language: dialects, and files bot.index calls "config".
SUFFIX_TAGS = {
    ".tsx": "tsx",
    ".jsx": "jsx",
    ".json": "json",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".ini": "ini",
    ".cfg": "ini",
    ".html": "html",
    ".css": "css",
    ".sql": "sql",
}


def language_name(path: str) -> str:
    """ "Go", "TypeScript", …; "" where the file is not code in a known language."""
    return NAMES.get(language_of(path), "")


def fence_tag(path: str) -> str:
    """The info string of a fenced block holding this file; "" when none fits."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in SUFFIX_TAGS:
        return SUFFIX_TAGS[suffix]
    language = language_of(path)
    if language not in NAMES:
        return ""
    return TAGS.get(language, language)
