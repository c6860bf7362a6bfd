/**
 * Typed events a user can subscribe to. Never required: with no listener nothing happens, and
 * a listener that throws is contained.
 */
import type { DropReason, FailReason } from './delivery.js';

export interface TrackerEvents {
  /** An event failed for good. */
  error: { reason: FailReason; status?: number; message: string; id: string };
  /** An event was never sent. */
  drop: { reason: DropReason; id?: string };
  /** An attempt failed and the event will be tried again after `delayMs`. */
  retry: { reason: FailReason; attempt: number; delayMs: number; id: string };
  /** The circuit opened (the endpoint is unreachable; sending paused) or closed again. */
  circuit: { state: 'open' | 'closed'; failures: number; retryInMs?: number };
}

export type TrackerEventName = keyof TrackerEvents;
export type TrackerListener<K extends TrackerEventName> = (payload: TrackerEvents[K]) => void;

export const EVENT_NAMES: readonly TrackerEventName[] = ['error', 'drop', 'retry', 'circuit'];

export class Emitter {
  private readonly listeners = new Map<TrackerEventName, Set<(payload: never) => void>>();

  /** `onInterest` hears when a name gains its first listener or loses its last. */
  constructor(private readonly onInterest?: (name: TrackerEventName, listened: boolean) => void) {}

  on<K extends TrackerEventName>(name: K, listener: TrackerListener<K>): void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    const before = set.size;
    set.add(listener);
    if (before === 0 && set.size === 1) this.onInterest?.(name, true);
  }

  off<K extends TrackerEventName>(name: K, listener: TrackerListener<K>): void {
    const set = this.listeners.get(name);
    if (set?.delete(listener) && set.size === 0) this.onInterest?.(name, false);
  }

  /** True when `name` has a listener. */
  listened(name: TrackerEventName): boolean {
    return (this.listeners.get(name)?.size ?? 0) > 0;
  }

  emit<K extends TrackerEventName>(name: K, payload: TrackerEvents[K]): void {
    const set = this.listeners.get(name) as Set<TrackerListener<K>> | undefined;
    if (!set) return;
    for (const listener of set) {
      try {
        listener(payload);
      } catch {
        // A listener's failure must not change an event's fate.
      }
    }
  }
}
