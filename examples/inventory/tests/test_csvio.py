from inventory import Item
from inventory.csvio import dump_csv, load_csv


def test_round_trip() -> None:
    items = [Item("A1", "red pen", 10, 1.5)]
    assert load_csv(dump_csv(items)) == items
