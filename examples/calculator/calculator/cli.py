"""Interactive command line: one expression or command per line."""

import sys
from typing import TextIO

from calculator.calculator import Calculator, CalculatorError

HELP = """commands:
  <a> <op> <b>   calculate (op: + - * / ^; a or b may be m or ans)
  ms [value]     store value (or the last result) in memory
  mr             recall memory
  help           this text
  quit           leave"""


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def handle(calc: Calculator, line: str) -> str | None:
    """Run one input line; returns the text to print, or None to quit."""
    words = line.split()
    if not words:
        return ""
    command = words[0].lower()
    try:
        if command in ("quit", "exit"):
            return None
        if command == "help":
            return HELP
        if command == "ms":
            calc.memory_store(float(words[1]) if len(words) > 1 else None)
            return "stored"
        if command == "mr":
            return format_number(calc.memory_recall())
        return format_number(calc.evaluate(line))
    except CalculatorError as exc:
        return f"error: {exc}"
    except ValueError:
        return f"error: not a number: {words[1]}"


def main(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    calc = Calculator()
    for line in stdin:
        output = handle(calc, line)
        if output is None:
            break
        if output:
            print(output, file=stdout)
    return 0
