/**
 * Where `req.analytics` and `req.track` live.
 *
 * Express gives every request a hidden class of its own (it swaps the request's prototype), so
 * each property a middleware adds builds a new one: about 3 µs for the first
 * (bench/request-properties.mjs). So on an Express request the two are accessors on Express's
 * base request prototype (`express.request`, shared by all apps and mounted apps of that copy
 * of Express). On a plain `http` request (Connect, a bare server) an own property costs 0.1 µs
 * and patching Node's own prototype is not ours to do: there they are own properties, as any
 * middleware would add them.
 *
 * The accessors find the request's context through objects the request already has, each
 * stamped with a private field (invisible to the app, to `util.inspect` and to
 * `Reflect.ownKeys`; adding one to an array or a socket costs about as much as a plain store):
 * - its `rawHeaders` array, made for this request by Node's parser: found for as long as the
 *   request lives;
 * - its socket, which holds the request in flight on that connection until its response
 *   finishes: found even when the app gives the request a new `rawHeaders` array meanwhile.
 * A request whose `rawHeaders` is no array, or an array another request has stamped (requests
 * made by hand, by a test tool), is found in a `WeakMap` instead. The `WeakMap` is not used for
 * all requests because it is slow in V8 for short-lived keys: an entry whose key and value are
 * young but whose table is old goes through the GC's ephemeron barrier, about 1.5-2 µs a request
 * (perf, and 10 interleaved pairs of a copy of `bench/request-cost.mjs` loading either build,
 * twice: 2.3 and 3.3 µs less per request without it).
 *
 * The stamps and the `WeakMap` are shared through the global symbol registry, so that every copy
 * of this package in a process (ESM and CJS, or two versions) knows which requests another copy
 * has seen.
 */
import { IncomingMessage } from 'node:http';
import type { RequestContext } from './context.js';

/** The shared registry's key; a change in what it holds needs a new key (and a new OURS). */
const REGISTRY = Symbol.for('zenovay-express.requests.v2');
/** Marks the accessors as ours, whichever copy installed them. */
const OURS = Symbol.for('zenovay-express.accessor.v2');

/** A stamp: the request it was made for, checked on every read, and its context. */
interface Entry {
  readonly request: object;
  readonly context: RequestContext;
}

interface Registry {
  /** Requests without a `rawHeaders` array, by the request itself. */
  readonly contexts: WeakMap<object, RequestContext>;
  /** Stamps `holder` (or clears its stamp, with undefined); false when it cannot hold one. */
  readonly stamp: (holder: object, entry: Entry | undefined) => boolean;
  /** The stamp on `holder`, if any. */
  readonly stampOf: (holder: object) => Entry | undefined;
}

/**
 * The private field behind the stamps, on any object: a constructor that returns an object
 * other than `this` makes a subclass's fields land on that object.
 */
function createRegistry(): Registry {
  class Target {
    constructor(target: object) {
      return target;
    }
  }
  class Stamped extends Target {
    #entry: Entry | undefined;
    constructor(target: object, entry: Entry) {
      super(target);
      this.#entry = entry;
    }
    static stamp(holder: object, entry: Entry | undefined): boolean {
      if (#entry in holder) {
        holder.#entry = entry;
        return true;
      }
      if (entry === undefined) return true;
      try {
        new Stamped(holder, entry);
        return true;
      } catch {
        // An object V8 will not add a private field to.
        return false;
      }
    }
    static stampOf(holder: object): Entry | undefined {
      return #entry in holder ? holder.#entry : undefined;
    }
  }
  return { contexts: new WeakMap(), stamp: Stamped.stamp, stampOf: Stamped.stampOf };
}

const shared = globalThis as { [REGISTRY]?: Registry };
const registry: Registry = (shared[REGISTRY] ??= createRegistry());
const { contexts, stamp, stampOf } = registry;

/**
 * The context of a request that this package (any copy) has seen; undefined otherwise. `raw` and
 * `socket` are the request's `rawHeaders` and `socket`, read by the caller (each read of an
 * Express request's own fields costs about 0.3 µs).
 */
export function findContext(
  req: object,
  raw: unknown,
  socket: unknown,
): RequestContext | undefined {
  if (typeof raw === 'object' && raw !== null) {
    const entry = stampOf(raw);
    if (entry !== undefined && entry.request === req) return entry.context;
  }
  if (typeof socket === 'object' && socket !== null) {
    const entry = stampOf(socket);
    if (entry !== undefined && entry.request === req) return entry.context;
  }
  return contexts.get(req);
}

/** {@link findContext}, reading the request's fields itself. */
export function contextOf(req: object): RequestContext | undefined {
  const { rawHeaders, socket } = req as { rawHeaders?: unknown; socket?: unknown };
  return findContext(req, rawHeaders, socket);
}

/** The response of the request in flight on `socket` finished: its stamp there goes. */
export function releaseSocket(socket: unknown, req: object): void {
  if (typeof socket !== 'object' || socket === null) return;
  if (stampOf(socket)?.request === req) stamp(socket, undefined);
}

/** Prototypes already looked at: whether requests with them get the accessors. */
const knownPrototypes = new WeakMap<object, boolean>();
let lastPrototype: object | null = null;
let lastWithAccessors = false;

/**
 * Makes `req.analytics` this context and `req.track` its bound function. `raw` and `socket` are
 * the request's `rawHeaders` and `socket`, read by the caller.
 */
export function attach(
  req: IncomingMessage,
  raw: unknown,
  socket: unknown,
  context: RequestContext,
): void {
  const entry: Entry = { request: req, context };
  // An array another request has stamped (requests made by hand can share one) stays its.
  if (!Array.isArray(raw) || stampOf(raw) !== undefined || !stamp(raw, entry)) {
    contexts.set(req, context);
  }
  if (typeof socket === 'object' && socket !== null) stamp(socket, entry);
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
      accessor('analytics', (req) => contextOf(req)),
    );
    Object.defineProperty(
      base,
      'track',
      accessor('track', (req) => contextOf(req)?.trackFunction),
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
