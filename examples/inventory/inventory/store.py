"""The inventory: items by SKU and the stock movements on them."""

from inventory.models import InventoryError, Item


class Inventory:
    def __init__(self) -> None:
        self.items: dict[str, Item] = {}

    def add_item(self, item: Item) -> None:
        if item.sku in self.items:
            raise InventoryError(f"duplicate sku: {item.sku}")
        if item.quantity < 0:
            raise InventoryError(f"negative quantity for {item.sku}")
        self.items[item.sku] = item

    def get(self, sku: str) -> Item:
        try:
            return self.items[sku]
        except KeyError:
            raise InventoryError(f"unknown sku: {sku}") from None

    def restock(self, sku: str, count: int) -> int:
        """Add `count` units; returns the new quantity."""
        item = self.get(sku)
        item.quantity += count
        return item.quantity

    def sell(self, sku: str, count: int) -> int:
        """Take `count` units out; returns the new quantity."""
        item = self.get(sku)
        if count > item.quantity:
            raise InventoryError(f"only {item.quantity} of {sku} in stock")
        item.quantity -= count
        return item.quantity

    def total_value(self) -> float:
        return sum(item.quantity * item.unit_price for item in self.items.values())

    def low_stock(self, threshold: int) -> list[Item]:
        """Items with a quantity at or below `threshold`, by SKU."""
        return sorted(
            (item for item in self.items.values() if item.quantity <= threshold), key=lambda i: i.sku
        )

    def find(self, text: str) -> list[Item]:
        """Items whose name contains `text`, by SKU."""
        return sorted((i for i in self.items.values() if text in i.name), key=lambda i: i.sku)
