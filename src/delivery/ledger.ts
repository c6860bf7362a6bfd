/**
 * The open (unsettled) events of a delivery, by their arrival number, in order.
 *
 * Why not a Map or a Set: a delivery adds and removes thousands of entries a second. Each time a
 * Map or Set outgrows its table, V8 keeps the old table linked to the new one (for iterators), and
 * once an old table has reached the old generation, that chain keeps every younger table, and the
 * events they held, alive through each minor GC until the next full one. Measured with
 * `--trace-gc` on the request thread: 2 MB promoted per scavenge, and twice the GC time.
 *
 * Here an event sits in a ring at `number mod size`, so adding and removing allocate nothing.
 * The ring starts small and doubles when an event would push out one still open, up to
 * {@link MAX_SLOTS}; past that, an event still open a whole turn later (a long retry, say)
 * moves to a Map, the rare case.
 */
export const MAX_SLOTS = 65_536;
const FIRST_SLOTS = 256;

export class Ledger<T> {
  private numbers = new Float64Array(FIRST_SLOTS);
  private values: (T | undefined)[] = new Array<T | undefined>(FIRST_SLOTS).fill(undefined);
  private mask = FIRST_SLOTS - 1;
  /**
   * Events pushed out of a full-sized ring by one a whole turn younger, still open. Numbers come
   * one by one, so they are pushed out in order: the first key is the smallest.
   */
  private readonly overflow = new Map<number, T>();
  private count = 0;
  /** No open event in the ring has a smaller number. */
  private low = 1;
  /** The last number added. */
  private last = 0;

  /** How many events are open. */
  get size(): number {
    return this.count;
  }

  /** Adds event `number`: the first is 1, and each is one more than the one before. */
  add(number: number, value: T): void {
    let slot = number & this.mask;
    while (this.numbers[slot] !== 0 && this.mask + 1 < MAX_SLOTS) {
      this.grow();
      slot = number & this.mask;
    }
    const held = this.numbers[slot]!;
    if (held !== 0) this.overflow.set(held, this.values[slot]!);
    this.numbers[slot] = number;
    this.values[slot] = value;
    this.last = number;
    this.count++;
  }

  /** Removes event `number` and returns it; undefined when it is not open. */
  take(number: number): T | undefined {
    const slot = number & this.mask;
    if (this.numbers[slot] === number) {
      const value = this.values[slot];
      this.numbers[slot] = 0;
      this.values[slot] = undefined;
      this.count--;
      return value;
    }
    if (this.overflow.size === 0) return undefined;
    const value = this.overflow.get(number);
    if (value !== undefined) {
      this.overflow.delete(number);
      this.count--;
    }
    return value;
  }

  /** The value of open event `number`, or undefined. */
  peek(number: number): T | undefined {
    const slot = number & this.mask;
    if (this.numbers[slot] === number) return this.values[slot];
    return this.overflow.size === 0 ? undefined : this.overflow.get(number);
  }

  /** Replaces the value of open event `number`; does nothing when it is not open. */
  replace(number: number, value: T): void {
    const slot = number & this.mask;
    if (this.numbers[slot] === number) this.values[slot] = value;
    else if (this.overflow.has(number)) this.overflow.set(number, value);
  }

  /** The smallest open number, or undefined when none is open. */
  first(): number | undefined {
    if (this.count === 0) return undefined;
    // Everything in the overflow is older than everything in the ring.
    if (this.overflow.size > 0) return this.overflow.keys().next().value;
    const oldest = this.oldestInRing();
    if (this.low < oldest) this.low = oldest;
    while (this.numbers[this.low & this.mask] !== this.low) this.low++;
    return this.low;
  }

  /** The open numbers and events in order of number (a copy). */
  entries(): [number, T][] {
    const out: [number, T][] = [...this.overflow];
    for (let number = this.oldestInRing(); number <= this.last; number++) {
      const slot = number & this.mask;
      if (this.numbers[slot] === number) out.push([number, this.values[slot]!]);
    }
    return out;
  }

  /** The smallest number the ring can hold: everything in it is younger than a turn before the last. */
  private oldestInRing(): number {
    return Math.max(1, this.last - this.mask);
  }

  /** Twice the slots, every open event moved to its new place. */
  private grow(): void {
    const { numbers, values } = this;
    const size = numbers.length * 2;
    this.numbers = new Float64Array(size);
    this.values = new Array<T | undefined>(size).fill(undefined);
    this.mask = size - 1;
    for (let slot = 0; slot < numbers.length; slot++) {
      const number = numbers[slot]!;
      if (number !== 0) {
        this.numbers[number & this.mask] = number;
        this.values[number & this.mask] = values[slot];
      }
    }
  }
}
