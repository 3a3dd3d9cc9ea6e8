// The few parts of Node's built-in modules the tests use, declared here so that
// the project compiles with a bare `tsc` and needs no npm package (@types/node).
declare module "node:test" {
  export function test(name: string, fn: () => void | Promise<void>): Promise<void>;
}

declare module "node:assert/strict" {
  export function equal(actual: unknown, expected: unknown, message?: string): void;
  export function deepEqual(actual: unknown, expected: unknown, message?: string): void;
  export function throws(fn: () => unknown, expected?: RegExp, message?: string): void;
}
