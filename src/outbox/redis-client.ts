/**
 * The Redis outbox's connection: the user's own client (ioredis or node-redis, already set up),
 * or one the store makes from a URL with the client this package chose, loaded only then (it is an
 * optional peer dependency: who does not use the Redis outbox does not install it).
 */

/** An ioredis client (`new Redis(...)`, or a `Cluster`). */
export interface IoredisLikeClient {
  call(command: string, ...args: string[]): Promise<unknown>;
}

/** A node-redis client (`createClient(...)`, connected), v4 and later. */
export interface NodeRedisLikeClient {
  sendCommand(args: string[]): Promise<unknown>;
}

/** A Redis client of the user's: the store sends its commands through it and never closes it. */
export type RedisClientLike = IoredisLikeClient | NodeRedisLikeClient;

/** What the store needs of a connection: one command, as an argument list. */
export interface RedisLink {
  /** Where it points, for messages (no password). */
  readonly label: string;
  send(args: string[]): Promise<unknown>;
  /** Ends a connection the store made; leaves the user's own client open. */
  close(): Promise<void>;
}

export function isRedisClientLike(value: unknown): value is RedisClientLike {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<IoredisLikeClient & NodeRedisLikeClient>;
  return typeof v.call === 'function' || typeof v.sendCommand === 'function';
}

/** The user's client behind the store's face. ioredis first: it has a `sendCommand` of its own. */
export function linkClient(client: RedisClientLike): RedisLink {
  if (typeof (client as Partial<IoredisLikeClient>).call === 'function') {
    const io = client as IoredisLikeClient;
    return {
      label: 'the given ioredis client',
      send: ([command, ...args]) => io.call(command as string, ...args),
      close: async () => undefined,
    };
  }
  const nr = client as NodeRedisLikeClient;
  return {
    label: 'the given node-redis client',
    send: (args) => nr.sendCommand(args),
    close: async () => undefined,
  };
}

/** `redis://user:secret@host:6379/2` -> `redis://host:6379/2`: messages never show a password. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return '(an invalid URL)';
  }
}

/** node-redis is not installed, or does not load: a matter of the install, not of Redis. */
export class ClientLoadError extends Error {}

/**
 * node-redis, loaded when a URL is first used: through the module's own `require` where it has
 * one (the CommonJS build, and Jest, whose sandbox refuses `import()` in CommonJS files outside
 * its ESM mode), otherwise by `import()` (the ES module build). `module.require` and not a bare
 * `require`: bundlers replace the latter with a shim that exists, and throws, in ES modules.
 */
function loadNodeRedis(): Promise<typeof import('@redis/client')> {
  if (typeof module === 'object' && module !== null && typeof module.require === 'function') {
    return Promise.resolve(module.require('@redis/client') as typeof import('@redis/client'));
  }
  return import('@redis/client');
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Connects to `url` with node-redis (`@redis/client`), loaded now, not when the package loads.
 * Waits for the connection up to `timeoutMs` (node-redis retries meanwhile: a Redis that starts
 * beside the app is fine), then rejects, leaving nothing behind. Once connected, a lost
 * connection is made again by node-redis (every 100 ms more, up to 2 s); commands sent meanwhile
 * fail at once (no offline queue), and the store keeps its writes until they succeed.
 */
export async function connectUrl(
  url: string,
  timeoutMs: number,
  onError: (error: Error) => void,
): Promise<RedisLink> {
  let createClient: typeof import('@redis/client').createClient;
  try {
    ({ createClient } = await loadNodeRedis());
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new ClientLoadError(
      code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND'
        ? 'a Redis outbox given a URL connects with node-redis: `npm install @redis/client` (or pass your own ioredis or node-redis client)'
        : `node-redis (@redis/client) could not be loaded: ${errorText(error)}`,
      { cause: error },
    );
  }
  const client = createClient({
    url,
    // One reply shape whatever the version's default protocol.
    RESP: 2,
    disableOfflineQueue: true,
    socket: {
      connectTimeout: timeoutMs,
      reconnectStrategy: (retries: number) => Math.min(100 * (retries + 1), 2000),
    },
  });
  let lastError = 'no answer';
  // An 'error' event with no listener would end the process; the store reports what matters.
  client.on('error', (error: Error) => {
    lastError = error.message;
    onError(error);
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`not connected after ${timeoutMs} ms (${lastError})`)),
          timeoutMs,
        );
      }),
    ]);
  } catch (error) {
    client.destroy();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return {
    label: redactUrl(url),
    send: (args) => client.sendCommand(args),
    close: async () => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          client.close(),
          new Promise((_, reject) => (timer = setTimeout(reject, 1000))),
        ]);
      } catch {
        // No clean close in time: drop the connection.
        client.destroy();
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
