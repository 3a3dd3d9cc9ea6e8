"""What the inventory holds."""

from dataclasses import dataclass


class InventoryError(Exception):
    """A stock movement or an input that cannot be accepted."""


@dataclass
class Item:
    sku: str
    name: str
    quantity: int
    unit_price: float

    @property
    def value(self) -> float:
        return self.quantity * self.unit_price
