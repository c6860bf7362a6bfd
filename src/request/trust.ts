/**
 * Which proxies may speak for the visitor: Express's `trust proxy` semantics, for any framework.
 */
import proxyaddr from 'proxy-addr';

/** Is the address `addr`, `hop` steps from the app, a proxy we trust? */
export type TrustFunction = (addr: string, hop: number) => boolean;

/** What `trustProxy` (and Express's `trust proxy` setting) accepts. */
export type TrustProxy = boolean | number | string | readonly string[] | TrustFunction;

const trustNothing: TrustFunction = () => false;
const trustEverything: TrustFunction = () => true;

/** Compiles a `trustProxy` value exactly as Express compiles its `trust proxy` setting. */
export function compileTrust(value: TrustProxy): TrustFunction {
  if (typeof value === 'function') return value;
  if (value === true) return trustEverything;
  if (value === false) return trustNothing;
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0)
      throw new Error('a hop count is a whole number >= 0');
    return (_addr, hop) => hop < value;
  }
  const list = typeof value === 'string' ? value.split(',').map((s) => s.trim()) : value;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) {
    throw new Error('not a supported value');
  }
  return proxyaddr.compile([...list]);
}

/**
 * The trust function that applies to a request, given its prototype: the middleware's
 * `trustProxy` option when given, else the Express app's own compiled setting, else nothing.
 */
export function trustFor(
  requestPrototype: object | null,
  configured: TrustFunction | undefined,
): TrustFunction {
  if (configured) return configured;
  // `req.app` is Express's, on the prototype it gives the request (`app.request`): read there,
  // which is faster than through a request of a hidden class of its own, and the same value.
  const app = (requestPrototype as { app?: { get?: (name: string) => unknown } } | null)?.app;
  const fromExpress = typeof app?.get === 'function' ? app.get('trust proxy fn') : undefined;
  return typeof fromExpress === 'function' ? (fromExpress as TrustFunction) : trustNothing;
}
