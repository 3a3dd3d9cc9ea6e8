"""The calculator: evaluates `a op b` and keeps a memory register."""

from calculator.operations import get_operation


class CalculatorError(Exception):
    """A user-facing error: bad input or an impossible operation."""


class Calculator:
    def __init__(self) -> None:
        self.memory: float | None = None
        self.last_result: float | None = None

    def calculate(self, a: float, op: str, b: float) -> float:
        try:
            result = get_operation(op)(a, b)
        except (ValueError, ZeroDivisionError) as exc:
            raise CalculatorError(str(exc)) from exc
        self.last_result = result
        return result

    def evaluate(self, expression: str) -> float:
        """Evaluate `a op b`; `m` stands for the memory, `ans` for the last result."""
        parts = expression.split()
        if len(parts) != 3:
            raise CalculatorError("expected: <number> <operator> <number>")
        left, op, right = parts
        return self.calculate(self._operand(left), op, self._operand(right))

    def memory_store(self, value: float | None = None) -> None:
        """Store `value`, or the last result when no value is given."""
        if value is None:
            if self.last_result is None:
                raise CalculatorError("nothing to store")
            value = self.last_result
        self.memory = value

    def memory_recall(self) -> float:
        if self.memory is None:
            raise CalculatorError("memory is empty")
        return self.memory

    def _operand(self, token: str) -> float:
        if token == "m":
            return self.memory_recall()
        if token == "ans":
            if self.last_result is None:
                raise CalculatorError("no previous result")
            return self.last_result
        try:
            return float(token)
        except ValueError:
            raise CalculatorError(f"not a number: {token}") from None
