/**
 * The ledger of open events: the ring that replaced a Map, checked against a Map as the model.
 * Any order of settling, any number open at once, past the ring's largest size into its overflow.
 */
import fc from 'fast-check';
import { Ledger, MAX_SLOTS } from '../../src/delivery/ledger';

/** Adds and takes a ledger and a Map alike, checking every answer against the Map's. */
function replay(ops: readonly { add: boolean; pick: number }[]): void {
  const ledger = new Ledger<string>();
  const model = new Map<number, string>();
  let next = 1;
  for (const op of ops) {
    if (op.add || model.size === 0) {
      ledger.add(next, `event ${next}`);
      model.set(next, `event ${next}`);
      next++;
    } else {
      // Settle any open event (or one long settled, or never added: both answer undefined).
      const keys = [...model.keys()];
      const number = op.pick % 5 === 0 ? op.pick : keys[op.pick % keys.length]!;
      expect(ledger.take(number)).toBe(model.get(number));
      model.delete(number);
    }
    expect(ledger.size).toBe(model.size);
    expect(ledger.first()).toBe(model.size === 0 ? undefined : Math.min(...model.keys()));
  }
  expect(ledger.entries()).toEqual([...model].sort((a, b) => a[0] - b[0]));
}

describe('Ledger', () => {
  test('any sequence of adds and takes answers as a Map would', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ add: fc.boolean(), pick: fc.nat() }), { maxLength: 2000 }),
        (ops) => replay(ops),
      ),
      { seed: 20261128, numRuns: 300 },
    );
  });

  test('an event open for a long time survives the ring growing, and first() stays on it', () => {
    const ledger = new Ledger<number>();
    ledger.add(1, 1);
    for (let n = 2; n <= 5000; n++) {
      ledger.add(n, n);
      expect(ledger.take(n)).toBe(n);
    }
    expect(ledger.first()).toBe(1);
    expect(ledger.size).toBe(1);
    expect(ledger.take(1)).toBe(1);
    expect(ledger.first()).toBeUndefined();
    expect(ledger.take(1)).toBeUndefined();
  });

  test('past the largest ring, old open events move to the overflow and keep their order', () => {
    const ledger = new Ledger<number>();
    const total = MAX_SLOTS + 1000;
    for (let n = 1; n <= total; n++) ledger.add(n, n * 10);
    expect(ledger.size).toBe(total);
    expect(ledger.first()).toBe(1);
    const entries = ledger.entries();
    expect(entries).toHaveLength(total);
    expect(entries.every(([n, v], i) => n === i + 1 && v === n * 10)).toBe(true);
    // Settle in order: first() follows, through the overflow and then the ring.
    const wrong: number[] = [];
    for (let n = 1; n <= total; n++) {
      if (ledger.first() !== n || ledger.take(n) !== n * 10) wrong.push(n);
    }
    expect(wrong).toEqual([]);
    expect(ledger.size).toBe(0);
    expect(ledger.entries()).toEqual([]);
  });

  test('settling newest first leaves the oldest as first()', () => {
    const ledger = new Ledger<number>();
    for (let n = 1; n <= 1000; n++) ledger.add(n, n);
    for (let n = 1000; n >= 2; n--) ledger.take(n);
    expect(ledger.first()).toBe(1);
    expect(ledger.entries()).toEqual([[1, 1]]);
  });
});
