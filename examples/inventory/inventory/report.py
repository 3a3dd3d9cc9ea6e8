"""A plain-text stock report."""

from inventory.store import Inventory


def format_report(inventory: Inventory) -> str:
    lines = [f"{'sku':<8} {'name':<20} {'qty':>5} {'value':>10}"]
    for sku in sorted(inventory.items):
        item = inventory.items[sku]
        lines.append(f"{item.sku:<8} {item.name:<20} {item.quantity:>5} {item.value:>10.2f}")
    return "\n".join(lines)
