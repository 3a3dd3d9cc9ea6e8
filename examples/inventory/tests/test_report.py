from inventory import Inventory, Item
from inventory.report import format_report


def test_report_lists_items() -> None:
    inv = Inventory()
    inv.add_item(Item("A1", "red pen", 10, 1.5))
    lines = format_report(inv).splitlines()
    assert lines[0].split() == ["sku", "name", "qty", "value"]
    assert lines[1].split() == ["A1", "red", "pen", "10", "15.00"]
