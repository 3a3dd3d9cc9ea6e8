"""A small calculator with a memory register."""

from calculator.calculator import Calculator, CalculatorError

__all__ = ["Calculator", "CalculatorError"]
