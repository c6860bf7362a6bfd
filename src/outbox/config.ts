/**
 * The `outbox` option: checked once, in the tracker's options, into a plain config that can cross
 * to the delivery worker (only a Redis client object cannot: it keeps delivery on the main
 * thread), and turned into a store by whichever thread runs delivery.
 */
import { hostname } from 'node:os';
import path from 'node:path';
import type { Reporter } from '../logger.js';
import { createDirectoryOutbox } from './dir-store.js';
import { createRedisOutbox } from './redis-store.js';
import type { RedisClientLike } from './redis-client.js';
import type { OutboxStore } from './types.js';
import type { EngineOutbox } from '../delivery/engine.js';

/** `outbox: { dir }`: a directory on this machine's disk, one process at a time. */
export interface DirectoryOutboxOption {
  /** The directory (created when missing). One process per directory. */
  dir: string;
  /**
   * `'interval'`: written to the kernel at once (survives a killed process) and flushed to the
   * disk every `syncInterval` ms (survives a power cut up to that); `'always'`: flushed after
   * every write, in groups.
   * @default 'interval'
   */
  sync?: 'interval' | 'always';
  /**
   * Milliseconds between flushes to the disk with `sync: 'interval'`.
   * @default 1000
   */
  syncInterval?: number;
  /**
   * Bytes on disk at most; past it new events are dropped (reason `outbox_full`).
   * @default 268435456 (256 MiB)
   */
  maxBytes?: number;
}

/** `outbox: { redis }`: a Redis Stream shared by every instance of the app. */
export interface RedisOutboxOption {
  /**
   * A `redis://` or `rediss://` URL (needs the `@redis/client` package installed), or your own
   * connected client (ioredis, node-redis): a client object keeps delivery on the main thread.
   */
  redis: string | RedisClientLike;
  /** @default `zenovay:outbox:{trackingCode}` */
  stream?: string;
  /** The consumer group. @default 'zenovay' */
  group?: string;
  /**
   * This instance's name in the group.
   * @default `host:pid:random`, new for each tracker
   */
  consumer?: string;
  /**
   * Entries the stream holds at most; past it new events are dropped (reason `outbox_full`).
   * @default 1000000
   */
  maxLength?: number;
  /**
   * Milliseconds after which an instance not heard of is taken for dead, and the events it left
   * are taken over by the others.
   * @default 60000
   */
  claimAfter?: number;
}

export type OutboxOption = DirectoryOutboxOption | RedisOutboxOption;

/** The checked option; everything but a Redis client object can cross to the worker. */
export type OutboxConfig =
  | {
      kind: 'directory';
      dir: string;
      sync: 'interval' | 'always' | undefined;
      syncIntervalMs: number | undefined;
      maxBytes: number | undefined;
    }
  | {
      kind: 'redis';
      redis: string | RedisClientLike;
      trackingCode: string;
      stream: string | undefined;
      group: string | undefined;
      consumer: string | undefined;
      maxLength: number | undefined;
      claimAfterMs: number | undefined;
    };

const DIRECTORY_KEYS = ['dir', 'sync', 'syncInterval', 'maxBytes'];
const REDIS_KEYS = ['redis', 'stream', 'group', 'consumer', 'maxLength', 'claimAfter'];

/** Checks `outbox`; throws a TypeError that says what is wrong. */
export function resolveOutbox(
  value: unknown,
  trackingCode: string,
  caller: string,
): OutboxConfig | undefined {
  if (value === undefined) return undefined;
  const fail = (what: string): never => {
    throw new TypeError(`zenovay-express: ${caller}() option \`outbox\` ${what}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(
      "must be { dir: '/var/lib/app/zenovay' } (a directory) or { redis: 'redis://host:6379' } (a Redis Stream).",
    );
  }
  const o = value as Record<string, unknown>;
  const isDir = o.dir !== undefined;
  const isRedis = o.redis !== undefined;
  if (isDir === isRedis) {
    fail(
      isDir
        ? 'takes `dir` or `redis`, not both.'
        : "needs `dir` (a directory: { dir: '/var/lib/app/zenovay' }) or `redis` (a URL or client).",
    );
  }
  const allowed = isDir ? DIRECTORY_KEYS : REDIS_KEYS;
  const unknown = Object.keys(o).filter((key) => !allowed.includes(key));
  if (unknown.length > 0) {
    fail(
      `got ${unknown.map((k) => `\`${k}\``).join(', ')}, which ${isDir ? 'a directory' : 'a Redis'} outbox does not take (it takes ${allowed.map((k) => `\`${k}\``).join(', ')}).`,
    );
  }
  const optionalInt = (name: string, min: number): number | undefined => {
    const v = o[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > 2 ** 31 - 1) {
      fail(`\`${name}\` must be a whole number from ${min} to ${2 ** 31 - 1}, got ${String(v)}.`);
    }
    return v as number;
  };
  const optionalName = (name: string): string | undefined => {
    const v = o[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') fail(`\`${name}\` must be a non-empty string.`);
    return v as string;
  };
  let config: OutboxConfig;
  if (isDir) {
    if (typeof o.dir !== 'string' || o.dir.trim() === '') {
      fail('`dir` must be a directory path (a non-empty string).');
    }
    if (o.sync !== undefined && o.sync !== 'interval' && o.sync !== 'always') {
      fail(`\`sync\` must be 'interval' or 'always', got ${JSON.stringify(o.sync)}.`);
    }
    config = {
      kind: 'directory',
      dir: path.resolve(o.dir as string),
      sync: o.sync as 'interval' | 'always' | undefined,
      syncIntervalMs: optionalInt('syncInterval', 1),
      maxBytes: optionalInt('maxBytes', 1),
    };
  } else {
    config = {
      kind: 'redis',
      redis: o.redis as string | RedisClientLike,
      trackingCode,
      stream: optionalName('stream'),
      group: optionalName('group'),
      consumer: optionalName('consumer'),
      maxLength: optionalInt('maxLength', 1),
      claimAfterMs: optionalInt('claimAfter', 1),
    };
  }
  // The stores check the rest (a URL's scheme, the smallest maxBytes) as they are built: build
  // one now, which does no I/O, so that a mistake shows here rather than in the worker.
  try {
    createOutboxStore(config, undefined, { lockToken: 'check', consumer: 'check' });
  } catch (error) {
    const message = (error as Error).message.replace(/^zenovay-express: /, '');
    fail(`is not usable: ${message}`);
  }
  return config;
}

/** Who is opening the store: the same for every delivery thread of one tracker. */
interface OutboxIdentity {
  /** Names this tracker in the directory's lock: a restarted delivery worker may take it over. */
  lockToken: string;
  /** This tracker's consumer name in the Redis group (when none is given). */
  consumer: string;
  /** Hears the keys of events this tracker had in the store that are gone from it. */
  onLost?: (keys: string[]) => void;
}

/** A new identity for a tracker. */
function outboxIdentity(keyPrefix: string): OutboxIdentity {
  return {
    lockToken: keyPrefix,
    consumer: `${hostname()}:${process.pid}:${keyPrefix.slice(0, 8)}`,
  };
}

/**
 * What an engine of the tracker whose keys start with `keyPrefix` needs of its outbox: the store
 * (opened by the engine; `lost` hears the keys it loses) and its kind.
 */
export function engineStore(
  config: OutboxConfig,
  reporter: Pick<Reporter, 'info' | 'warn' | 'error'>,
  keyPrefix: string,
  lost: (keys: string[]) => void,
): Pick<EngineOutbox, 'store' | 'kind'> {
  return {
    store: createOutboxStore(config, reporter, { ...outboxIdentity(keyPrefix), onLost: lost }),
    kind: config.kind,
  };
}

/** The store for a config (no I/O until its open()). */
export function createOutboxStore(
  config: OutboxConfig,
  reporter: Pick<Reporter, 'info' | 'warn' | 'error'> | undefined,
  identity: OutboxIdentity,
): OutboxStore {
  if (config.kind === 'directory') {
    return createDirectoryOutbox({
      dir: config.dir,
      lockToken: identity.lockToken,
      ...(identity.onLost ? { onLost: identity.onLost } : {}),
      ...(config.sync !== undefined ? { sync: config.sync } : {}),
      ...(config.syncIntervalMs !== undefined ? { syncIntervalMs: config.syncIntervalMs } : {}),
      ...(config.maxBytes !== undefined ? { maxBytes: config.maxBytes } : {}),
      ...(reporter ? { reporter } : {}),
    });
  }
  return createRedisOutbox({
    redis: config.redis,
    trackingCode: config.trackingCode,
    consumer: config.consumer ?? identity.consumer,
    ...(identity.onLost ? { onLost: identity.onLost } : {}),
    ...(config.stream !== undefined ? { stream: config.stream } : {}),
    ...(config.group !== undefined ? { group: config.group } : {}),
    ...(config.maxLength !== undefined ? { maxLength: config.maxLength } : {}),
    ...(config.claimAfterMs !== undefined ? { claimAfterMs: config.claimAfterMs } : {}),
    ...(reporter ? { reporter } : {}),
  });
}
