/** One thing to do. */
export interface Item {
  id: number;
  title: string;
  done: boolean;
}

/** A to-do list: items are added, completed and listed. */
export class TodoList {
  private items: Item[] = [];
  private nextId = 1;

  /** Add an item and return it; a blank title is refused. */
  add(title: string): Item {
    const trimmed = title.trim();
    if (!trimmed) {
      throw new Error("a to-do needs a title");
    }
    const item = { id: this.nextId++, title: trimmed, done: false };
    this.items.push(item);
    return item;
  }

  /** Mark the item with this id as done. */
  complete(id: number): void {
    const item = this.items.find((i) => i.id === id);
    if (!item) {
      throw new Error(`no to-do with id ${id}`);
    }
    item.done = true;
  }

  /** The items not done yet, oldest first. */
  pending(): Item[] {
    return this.items.filter((i) => !i.done);
  }
}
