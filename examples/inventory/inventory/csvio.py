"""Items to and from CSV text: sku,name,quantity,unit_price with a header line."""

import csv
import io

from inventory.models import InventoryError, Item

HEADER = ["sku", "name", "quantity", "unit_price"]


def load_csv(text: str) -> list[Item]:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != HEADER:
        raise InventoryError("the first line must be: " + ",".join(HEADER))
    items = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(HEADER):
            raise InventoryError(f"line {number}: expected {len(HEADER)} fields")
        sku, name, quantity, price = row
        try:
            items.append(Item(sku, name, int(quantity), float(price)))
        except ValueError:
            raise InventoryError(f"line {number}: not a number") from None
    return items


def dump_csv(items: list[Item]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for item in items:
        writer.writerow([item.sku, item.name, item.quantity, f"{item.unit_price:.2f}"])
    return out.getvalue()
