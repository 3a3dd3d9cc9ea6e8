import pytest

from inventory import Inventory, InventoryError, Item


def make() -> Inventory:
    inv = Inventory()
    inv.add_item(Item("A1", "red pen", 10, 1.5))
    inv.add_item(Item("B2", "blue pen", 2, 2.0))
    return inv


def test_add_duplicate() -> None:
    inv = make()
    with pytest.raises(InventoryError):
        inv.add_item(Item("A1", "other", 1, 1.0))


def test_restock_and_sell() -> None:
    inv = make()
    assert inv.restock("A1", 5) == 15
    assert inv.sell("A1", 3) == 12


def test_unknown_sku() -> None:
    with pytest.raises(InventoryError):
        make().sell("Z9", 1)
