"""Binary arithmetic operations, looked up by their symbol."""

from collections.abc import Callable


def add(a: float, b: float) -> float:
    return a + b


def subtract(a: float, b: float) -> float:
    return a - b


def multiply(a: float, b: float) -> float:
    return a * b


def divide(a: float, b: float) -> float:
    if b == 0:
        raise ZeroDivisionError("division by zero")
    return a / b


def power(a: float, b: float) -> float:
    return a**b


OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "^": power,
}


def get_operation(symbol: str) -> Callable[[float, float], float]:
    try:
        return OPERATIONS[symbol]
    except KeyError:
        raise ValueError(f"unknown operator: {symbol}") from None
