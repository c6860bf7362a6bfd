/**
 * The transport a tracker sends with when the app brings none: the package's keep-alive HTTP/1.1
 * client, with as many connections as requests may be in flight; through a proxy, undici's
 * `ProxyAgent` with the same cap (see proxy-transport.ts).
 */
import { createLeanTransport } from './lean-transport.js';
import { createProxyTransport } from './proxy-transport.js';
import type { Transport } from './transport.js';

/** What the default transport is built from (plain data: it crosses to the worker). */
export interface TransportSettings {
  concurrency: number | 'auto';
  maxConcurrency: number;
  /**
   * The proxy's URL (credentials included) when the endpoint is reached through one, as
   * `resolveProxy` decided at construction; undefined: direct.
   */
  proxy?: string | undefined;
}

/** Connections to the endpoint: the fixed limit, or the adaptive limit's ceiling. */
export function connectionCap(settings: TransportSettings): number {
  return settings.concurrency === 'auto' ? settings.maxConcurrency : settings.concurrency;
}

export function createDefaultTransport(settings: TransportSettings): Transport {
  const connections = connectionCap(settings);
  return settings.proxy === undefined
    ? createLeanTransport({ maxSockets: connections })
    : createProxyTransport({ proxy: settings.proxy, connections });
}
