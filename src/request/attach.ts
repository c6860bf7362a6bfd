/**
 * Where `req.analytics` and `req.track` live.
 *
 * Express gives every request a hidden class of its own (it swaps the request's prototype), so
 * each property a middleware adds to an Express request builds a new hidden class: 1 to 2 µs a
 * property (bench/request-properties.mjs). So on an Express request the two are accessors on
 * Express's base request prototype (`express.request`, shared by all apps and mounted apps of
 * that copy of Express), and the context itself sits in a WeakMap keyed by the request. On a
 * plain `http` request (Connect, a bare server) an own property costs 0.1 µs and patching
 * Node's own prototype is not ours to do: there they are own properties, as any middleware
 * would add them.
 *
 * The WeakMap is shared through the global symbol registry, so that every copy of this package
 * in a process (ESM and CJS, or two versions) knows which requests another copy has seen.
 */
import { IncomingMessage } from 'node:http';
import type { RequestContext } from './context.js';

/** The shared registry's key; a change in what it holds needs a new key (and a new OURS). */
const REGISTRY = Symbol.for('zenovay-express.requests.v1');
/** Marks the accessors as ours, whichever copy installed them. */
const OURS = Symbol.for('zenovay-express.accessor.v1');

type Registry = WeakMap<object, RequestContext>;
const shared = globalThis as { [REGISTRY]?: Registry };
const contexts: Registry = (shared[REGISTRY] ??= new WeakMap());

/** The context of a request that this package (any copy) has seen; undefined otherwise. */
export function contextOf(req: object): RequestContext | undefined {
  return contexts.get(req);
}

/** Prototypes already looked at: whether requests with them get the accessors. */
const knownPrototypes = new WeakMap<object, boolean>();
let lastPrototype: object | null = null;
let lastWithAccessors = false;

/** Makes `req.analytics` this context and `req.track` its bound function. */
export function attach(req: IncomingMessage, context: RequestContext): void {
  contexts.set(req, context);
  const prototype = Object.getPrototypeOf(req) as object | null;
  if (withAccessors(prototype)) {
    // An app that set its own `analytics` or `track` before the middleware shadows the
    // accessors: replace them, as an own property would have been replaced.
    if (!Object.hasOwn(req, 'analytics') && !Object.hasOwn(req, 'track')) return;
  } else if (prototype === IncomingMessage.prototype) {
    req.analytics = context;
    req.track = context.trackFunction;
    return;
  }
  // Defined, not assigned: a read-only property of that name up the chain would refuse it.
  defineOwn(req, 'analytics', context);
  defineOwn(req, 'track', context.trackFunction);
}

/**
 * For a request seen before, now in another app: makes sure its `req.analytics` and
 * `req.track` still work there. Express chains a mounted app's request prototype to its
 * parent's, but an app of another copy of Express called as a plain handler (as vhost does)
 * has a base prototype of its own, without the accessors yet. What the app set on the request
 * itself stays.
 */
export function reattach(req: IncomingMessage, context: RequestContext): void {
  const prototype = Object.getPrototypeOf(req) as object | null;
  if (withAccessors(prototype) || prototype === IncomingMessage.prototype) return;
  if (!Object.hasOwn(req, 'analytics')) defineOwn(req, 'analytics', context);
  if (!Object.hasOwn(req, 'track')) defineOwn(req, 'track', context.trackFunction);
}

/** {@link accessorsFor}, remembered for the last prototype (an app's): the usual case. */
function withAccessors(prototype: object | null): boolean {
  if (prototype !== lastPrototype) {
    lastPrototype = prototype;
    lastWithAccessors = accessorsFor(prototype);
  }
  return lastWithAccessors;
}

function defineOwn(target: object, name: string, value: unknown): void {
  Object.defineProperty(target, name, {
    value,
    writable: true,
    enumerable: true,
    configurable: true,
  });
}

/**
 * Whether requests with this prototype can use accessors: it is a framework's prototype below
 * IncomingMessage's (Express's), and the accessors are on the framework's base prototype, put
 * there now if no copy of this package did before.
 */
function accessorsFor(prototype: object | null): boolean {
  if (prototype === null || prototype === IncomingMessage.prototype) return false;
  const known = knownPrototypes.get(prototype);
  if (known !== undefined) return known;
  let base: object | null = prototype;
  while (base !== null && Object.getPrototypeOf(base) !== IncomingMessage.prototype) {
    base = Object.getPrototypeOf(base) as object | null;
  }
  const ok = base !== null && install(base);
  knownPrototypes.set(prototype, ok);
  return ok;
}

/** Puts the two accessors on `base`; false when it has other properties by those names. */
function install(base: object): boolean {
  const analytics = Object.getOwnPropertyDescriptor(base, 'analytics');
  const track = Object.getOwnPropertyDescriptor(base, 'track');
  const ours = (d: PropertyDescriptor | undefined): boolean =>
    d !== undefined && (d.get as { [OURS]?: boolean } | undefined)?.[OURS] === true;
  if (ours(analytics) && ours(track)) return true;
  if (analytics !== undefined || track !== undefined) return false;
  try {
    Object.defineProperty(
      base,
      'analytics',
      accessor('analytics', (req) => contexts.get(req)),
    );
    Object.defineProperty(
      base,
      'track',
      accessor('track', (req) => contexts.get(req)?.trackFunction),
    );
    return true;
  } catch {
    // A frozen or sealed prototype: own properties it is.
    delete (base as { analytics?: unknown }).analytics;
    return false;
  }
}

function accessor(name: string, read: (req: object) => unknown): PropertyDescriptor {
  const get = function (this: object): unknown {
    return read(this);
  };
  Object.defineProperty(get, OURS, { value: true });
  return {
    configurable: true,
    enumerable: false,
    get,
    // The app assigning its own value: it becomes the request's own property, as it would be
    // without the accessor.
    set(this: object, value: unknown) {
      defineOwn(this, name, value);
    },
  };
}
