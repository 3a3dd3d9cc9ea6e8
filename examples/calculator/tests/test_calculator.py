import pytest

from calculator import Calculator, CalculatorError


def test_evaluate_sets_last_result() -> None:
    calc = Calculator()
    assert calc.evaluate("6 * 7") == 42
    assert calc.last_result == 42
    assert calc.evaluate("ans + 1") == 43


def test_memory_store_and_recall() -> None:
    calc = Calculator()
    calc.memory_store(5)
    assert calc.memory_recall() == 5
    assert calc.evaluate("m * 2") == 10


def test_memory_store_last_result() -> None:
    calc = Calculator()
    calc.evaluate("1 + 1")
    calc.memory_store()
    assert calc.memory_recall() == 2


def test_empty_memory() -> None:
    with pytest.raises(CalculatorError, match="memory is empty"):
        Calculator().memory_recall()


def test_division_by_zero_is_user_error() -> None:
    with pytest.raises(CalculatorError):
        Calculator().evaluate("1 / 0")


def test_bad_expression() -> None:
    with pytest.raises(CalculatorError):
        Calculator().evaluate("1 +")
