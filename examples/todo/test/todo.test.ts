import { test } from "node:test";
import * as assert from "node:assert/strict";
import { TodoList } from "../src/todo";

test("add returns the new item", () => {
  const list = new TodoList();
  const item = list.add("  water the plants ");
  assert.deepEqual(item, { id: 1, title: "water the plants", done: false });
});

test("a blank title is refused", () => {
  assert.throws(() => new TodoList().add("   "), /needs a title/);
});

test("completed items are not pending", () => {
  const list = new TodoList();
  const first = list.add("one");
  list.add("two");
  list.complete(first.id);
  assert.deepEqual(
    list.pending().map((i) => i.title),
    ["two"],
  );
});
