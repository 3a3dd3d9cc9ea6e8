"""A small stock keeper: items, stock movements, CSV and a report."""

from inventory.models import InventoryError, Item
from inventory.store import Inventory

__all__ = ["Inventory", "InventoryError", "Item"]
