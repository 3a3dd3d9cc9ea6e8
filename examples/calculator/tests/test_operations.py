import pytest

from calculator.operations import OPERATIONS, divide, get_operation


@pytest.mark.parametrize(
    ("symbol", "a", "b", "expected"),
    [("+", 2, 3, 5), ("-", 2, 3, -1), ("*", 2, 3, 6), ("/", 3, 2, 1.5), ("^", 2, 3, 8)],
)
def test_operations(symbol: str, a: float, b: float, expected: float) -> None:
    assert OPERATIONS[symbol](a, b) == expected


def test_divide_by_zero() -> None:
    with pytest.raises(ZeroDivisionError):
        divide(1, 0)


def test_unknown_operator() -> None:
    with pytest.raises(ValueError, match="unknown operator"):
        get_operation("%")
