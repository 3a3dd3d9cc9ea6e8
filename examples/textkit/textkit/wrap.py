"""Wrapping text into lines of a given width."""


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap: each line as many words as fit in `width` characters."""
    if width < 1:
        raise ValueError("width must be at least 1")
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines
