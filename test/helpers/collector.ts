/** Starts the public test collector and closes it after each test file. */
import {
  createTestCollector,
  type TestCollector,
  type TestCollectorOptions,
} from '../../src/testing';

const open = new Set<TestCollector>();

export async function startCollector(options?: TestCollectorOptions): Promise<TestCollector> {
  const collector = await createTestCollector(options);
  open.add(collector);
  return collector;
}

afterAll(async () => {
  await Promise.all([...open].map((c) => c.close()));
  open.clear();
});

/** Waits a little to prove that nothing (more) arrives. */
export function settle(ms = 150): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
