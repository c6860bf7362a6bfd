/**
 * Delivery through an HTTP proxy. Which proxy, if any, is decided once, when the tracker is
 * built ({@link resolveProxy}): the `proxy` option, else the environment as curl and Node 24
 * read it (`https_proxy`/`HTTPS_PROXY` for an https endpoint, `http_proxy`/`HTTP_PROXY` for an
 * http one, `no_proxy`/`NO_PROXY` to go direct). The tunnel itself is undici's `ProxyAgent`
 * (CONNECT for an https endpoint, absolute-form requests for an http one), loaded only when a
 * proxy is in use: the direct path keeps the package's own client and never loads undici.
 */
import { BlockList, isIP } from 'node:net';
import type tls from 'node:tls';
import type { Readable } from 'node:stream';
import type * as Undici from 'undici';
import type { Transport, TransportRequest, TransportResponse } from './transport.js';

export interface ProxyTransportOptions {
  /** The proxy's URL, credentials included (`http://user:pass@host:port`), as resolveProxy returns it. */
  proxy: string;
  /** Most connections at once: tunnels to an https endpoint, or to the proxy for an http one. */
  connections: number;
  /** TLS options for an https endpoint, inside the tunnel (a private `ca`, say). */
  tls?: tls.ConnectionOptions;
}

/** Bytes of an answer's body kept for error messages (the engine shows 200 characters). */
const SNIPPET_BYTES = 2048;
const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };
const EXAMPLE =
  "'http://proxy.internal:3128' (with credentials: 'http://user:pass@proxy.internal:3128')";

let undici: Promise<typeof Undici> | undefined;

/**
 * undici costs ~150 ms and ~20 MB to load: only trackers that use a proxy pay for it. The
 * CommonJS build (where `module` exists) requires it: an `import()` there fails inside Jest
 * projects that do not run ESM ("A dynamic import callback was invoked without
 * --experimental-vm-modules"). The ESM build and the delivery worker import it.
 */
function loadUndici(): Promise<typeof Undici> {
  const cjs = typeof module === 'object' && module !== null ? module : undefined;
  undici ??=
    typeof cjs?.require === 'function'
      ? Promise.resolve().then(() => cjs.require('undici') as typeof Undici)
      : import('undici');
  return undici;
}

export function createProxyTransport(options: ProxyTransportOptions): Transport {
  return new ProxyTransport(options);
}

class ProxyTransport implements Transport {
  /** `http://host:port`: the proxy as every message names it, without credentials. */
  readonly name: string;
  private readonly agent: Promise<Undici.ProxyAgent>;
  /** Credentials as they may appear in a message, to be blotted out of it. */
  private readonly secrets: string[];
  private readonly targets = new Map<string, { origin: string; path: string }>();
  private closed = false;

  constructor(options: ProxyTransportOptions) {
    const url = new URL(options.proxy);
    this.name = proxyName(url);
    this.secrets = credentialsOf(url);
    const { connections } = options;
    // Our own Basic token: undici sends the URL's credentials only when both a user name and a
    // password are there, and curl sends `user:` for a user name alone (an API token, say).
    const token =
      url.username === '' && url.password === ''
        ? undefined
        : `Basic ${Buffer.from(`${safeDecode(url.username)}:${safeDecode(url.password)}`).toString('base64')}`;
    this.agent = loadUndici().then(
      ({ ProxyAgent, Pool }) =>
        new ProxyAgent({
          uri: url.href,
          ...(token ? { token } : {}),
          // Every pool it makes (to the endpoint through tunnels, or to the proxy for
          // absolute-form requests) holds at most `connections`.
          factory: (origin, opts) => new Pool(origin, { ...opts, connections }),
          // An http endpoint goes as absolute-form requests to the proxy (as curl and Node send
          // them: many proxies allow CONNECT only to port 443); an https one through CONNECT.
          proxyTunnel: false,
          ...(options.tls ? { requestTls: options.tls } : {}),
        }),
    );
    // A failure to load is reported by every send; this branch only keeps it from going unhandled.
    this.agent.catch(() => undefined);
  }

  async send(request: TransportRequest, signal: AbortSignal): Promise<TransportResponse> {
    let agent: Undici.ProxyAgent;
    try {
      agent = await this.agent;
    } catch (error) {
      throw new Error(
        `the proxy client (undici) could not be loaded for the proxy ${this.name}: ${this.scrub(messageOf(error))}`,
        { cause: error },
      );
    }
    if (this.closed) throw new Error(`the transport through the proxy ${this.name} is closed`);
    const { origin, path } = this.target(request.url);
    let status: number;
    let retryAfter: string | undefined;
    let body: string;
    try {
      const response = await agent.request({
        origin,
        path,
        method: 'POST',
        // ProxyAgent writes `host` into the object it is given: a copy keeps the caller's intact.
        headers: { ...request.headers },
        body: request.body,
        signal,
      });
      status = response.statusCode;
      const header = response.headers['retry-after'];
      retryAfter = Array.isArray(header) ? header[0] : header;
      body = await snippet(response.body);
    } catch (error) {
      if (signal.aborted) throw error;
      // No `cause`: undici's error may quote the proxy's URL, credentials and all, and loggers
      // print causes. The message says what happened.
      // eslint-disable-next-line preserve-caught-error
      throw new Error(this.explain(error));
    }
    // The endpoint never asks for proxy credentials: a 407 is the proxy's (absolute-form requests).
    if (status === 407) throw new Error(this.explain407());
    return { status, retryAfter, body };
  }

  async close(): Promise<void> {
    this.closed = true;
    const agent = await this.agent.catch(() => undefined);
    await agent?.destroy().catch(() => undefined);
  }

  private target(url: string): { origin: string; path: string } {
    let target = this.targets.get(url);
    if (target === undefined) {
      const parsed = new URL(url);
      target = { origin: parsed.origin, path: parsed.pathname + parsed.search };
      if (this.targets.size >= 64) this.targets.clear();
      this.targets.set(url, target);
    }
    return target;
  }

  /** What went wrong, naming the proxy and never its credentials. */
  private explain(error: unknown): string {
    const message = this.scrub(messageOf(error));
    const code = (error as { code?: unknown } | null)?.code;
    const status = /Proxy response \((\d{3})\)/.exec(message)?.[1];
    if (status === '407' || /\(407\)/.test(message)) return this.explain407();
    if (status !== undefined) {
      return `the proxy ${this.name} did not open a tunnel to the endpoint (it answered ${status} to CONNECT)`;
    }
    if (code === 'ECONNREFUSED') {
      return `the proxy ${this.name} refused the connection (ECONNREFUSED): is it running, and is that its port?`;
    }
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
      return `the proxy ${this.name} could not be found (${code}: its host name does not resolve)`;
    }
    return `through the proxy ${this.name}: ${message}`;
  }

  private explain407(): string {
    return (
      `the proxy ${this.name} answered 407 (Proxy Authentication Required): ` +
      (this.secrets.length > 0
        ? 'it did not accept the credentials in the proxy URL'
        : 'give it credentials in the proxy URL, http://user:pass@host:port')
    );
  }

  private scrub(message: string): string {
    let text = message;
    for (const secret of this.secrets) text = text.split(secret).join('***');
    return text;
  }
}

async function snippet(body: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  // Read to the end, so that the connection is reused, keeping only the start.
  for await (const chunk of body) {
    if (size < SNIPPET_BYTES) {
      const bytes = chunk as Buffer;
      chunks.push(bytes);
      size += bytes.length;
    }
  }
  return size === 0 ? '' : Buffer.concat(chunks).subarray(0, SNIPPET_BYTES).toString('utf8');
}

/**
 * The forms a proxy URL's credentials may take in a message, longest first: the whole URL, the
 * user-info (encoded and decoded), its Basic token, and each part of three characters or more
 * (blotting out a one-letter user name would garble the message, and hide little).
 */
function credentialsOf(url: URL): string[] {
  if (url.username === '' && url.password === '') return [];
  const user = safeDecode(url.username);
  const password = safeDecode(url.password);
  return [
    url.href,
    `${url.username}:${url.password}`,
    `${user}:${password}`,
    Buffer.from(`${user}:${password}`).toString('base64'),
    url.username,
    url.password,
    user,
    password,
  ]
    .filter((part) => part.length >= 3)
    .sort((a, b) => b.length - a.length);
}

function messageOf(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message !== '' ? message : String(error);
}

function decodes(text: string): boolean {
  try {
    decodeURIComponent(text);
    return true;
  } catch {
    return false;
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The proxy's scheme, host and port: what messages may show. */
export function proxyName(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

/** A proxy URL as an error message may quote it: any credentials replaced. */
function redact(text: string): string {
  return text.replace(
    /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)?.*@/s,
    (_, scheme?: string) => `${scheme ?? ''}***@`,
  );
}

/** Variables of the environment that resolveProxy reads. */
export type ProxyEnv = Readonly<Record<string, string | undefined>>;

/**
 * The proxy a tracker's endpoint is reached through, decided once, at construction: the URL
 * (credentials included) or undefined (direct).
 *
 * - `false` ignores the environment; a string is the proxy's URL (validated).
 * - Otherwise the environment: for an https endpoint `https_proxy`, then `HTTPS_PROXY`; for an
 *   http endpoint `http_proxy`, then `HTTP_PROXY` (the lower-case name wins, as in curl and
 *   Node). There is no fallback from https to `HTTP_PROXY` (curl, Node, Go; undici's
 *   EnvHttpProxyAgent alone falls back). A value without a scheme is `http://`.
 * - `no_proxy`, then `NO_PROXY`: comma- or space-separated entries; `*` means everything; a
 *   name matches itself and its subdomains (`.example.com` and `*.example.com` too); an IP, an
 *   IP range `a-b` or a CIDR block matches an endpoint given as an IP; `entry:port` only that
 *   port. The endpoint's host is not resolved.
 * - A custom `transport` routes requests itself: the environment is ignored, and an explicit
 *   `proxy` beside it is an error.
 * - A bad `proxy` option throws; a variable we cannot use (not a URL, a socks5:// proxy) is
 *   reported through `warn` and the endpoint is reached direct: the environment is shared with
 *   other tools, and must not stop the app from starting.
 */
export function resolveProxy(
  value: unknown,
  host: string,
  customTransport: boolean,
  caller: string,
  env: ProxyEnv = process.env,
  warn: (code: string, message: string) => void = () => undefined,
): string | undefined {
  if (value === false) return undefined;
  if (value !== undefined) {
    if (customTransport) {
      throw new TypeError(
        `zenovay-express: ${caller}() got both \`proxy\` and a custom \`transport\`. A custom transport ` +
          'routes requests itself: drop `proxy`, or drop `transport` to send through the proxy.',
      );
    }
    if (typeof value !== 'string') {
      throw new TypeError(
        `zenovay-express: ${caller}() option \`proxy\` must be the proxy's URL, such as ${EXAMPLE}, ` +
          `or false to ignore the proxy environment variables, got ${describeValue(value)}.`,
      );
    }
    return parseProxyUrl(value, `${caller}() option \`proxy\``, false);
  }
  if (customTransport) return undefined;
  const endpoint = new URL(host);
  const https = endpoint.protocol === 'https:';
  const names = https ? ['https_proxy', 'HTTPS_PROXY'] : ['http_proxy', 'HTTP_PROXY'];
  const found = firstSet(env, names);
  if (found === undefined) return undefined;
  const noProxy = firstSet(env, ['no_proxy', 'NO_PROXY']);
  if (noProxy !== undefined && bypasses(noProxy.value, endpoint)) return undefined;
  try {
    return parseProxyUrl(found.value, `the ${found.name} environment variable`, true, caller);
  } catch (error) {
    // The environment is shared with every tool on the machine (a socks5:// proxy for git, say):
    // a value we cannot use must not stop the app from starting. Direct, and said once.
    warn(
      'ZENOVAY_PROXY_ENV',
      `${(error as Error).message.replace(/^zenovay-express: /, '')} Events go direct, without a proxy.`,
    );
    return undefined;
  }
}

function firstSet(env: ProxyEnv, names: string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

function parseProxyUrl(raw: string, source: string, fromEnv: boolean, caller?: string): string {
  const hasScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(raw);
  // curl reads a variable without a scheme as http://; the option is ours, and strict.
  const text = fromEnv && !hasScheme ? `http://${raw}` : raw;
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  let problem: string | undefined;
  if (!hasScheme && !fromEnv) problem = 'has no scheme (http:// or https://)';
  else if (!url || url.hostname === '') problem = 'is not a URL';
  else if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    problem = `has the scheme ${url.protocol.slice(0, 20)} (an HTTP proxy is http:// or https://)`;
  } else if (url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) {
    problem = 'has a path, query or fragment (a proxy URL is scheme, host and port only)';
  } else if (!decodes(url.username) || !decodes(url.password)) {
    problem = 'has a % in its credentials that is not a percent-escape (write % as %25)';
  }
  if (problem === undefined) return url!.href;
  const fix = fromEnv
    ? `Fix the variable, or pass ${caller}({ proxy: false }) to ignore the proxy environment variables ` +
      `or { proxy: ${EXAMPLE} } to choose the proxy.`
    : `Give it as ${EXAMPLE}, or pass false to ignore the proxy environment variables.`;
  throw new TypeError(
    `zenovay-express: ${source} ${problem}: got ${JSON.stringify(redact(raw).slice(0, 80))}. ${fix}`,
  );
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'function') return 'a function';
  return `${String(value)} (${typeof value})`;
}

/** Whether a `NO_PROXY` list sends requests to `endpoint` direct. */
export function bypasses(list: string, endpoint: URL): boolean {
  const host = endpoint.hostname
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '')
    .toLowerCase();
  const port = Number(endpoint.port) || DEFAULT_PORTS[endpoint.protocol] || 0;
  const family = isIP(host);
  for (const raw of list.split(/[\s,]+/)) {
    if (raw === '') continue;
    if (raw === '*') return true;
    const entry = splitPort(raw.toLowerCase());
    if (entry.port !== undefined && entry.port !== port) continue;
    const name = entry.host.replace(/^\*?\./, '').replace(/\.$/, '');
    if (name === '') continue;
    if (family !== 0) {
      if (matchesAddress(name, host, family)) return true;
      continue;
    }
    if (host === name || host.endsWith(`.${name}`)) return true;
  }
  return false;
}

function splitPort(entry: string): { host: string; port: number | undefined } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) {
    return { host: bracketed[1]!, port: bracketed[2] ? Number(bracketed[2]) : undefined };
  }
  // One colon: host:port. More: an IPv6 address (or a block of them) without a port.
  const withPort = /^([^:]+):(\d+)$/.exec(entry);
  if (withPort) return { host: withPort[1]!, port: Number(withPort[2]) };
  return { host: entry, port: undefined };
}

/** An IP, an `a-b` range or a CIDR block of `entry` holds `address`. */
function matchesAddress(entry: string, address: string, family: number): boolean {
  const type = family === 6 ? 'ipv6' : 'ipv4';
  const list = new BlockList();
  try {
    const cidr = /^(.+)\/(\d{1,3})$/.exec(entry);
    const range = /^([^-]+)-([^-]+)$/.exec(entry);
    if (cidr && isIP(cidr[1]!) === family) {
      list.addSubnet(cidr[1]!, Number(cidr[2]), type);
    } else if (range && isIP(range[1]!) === family && isIP(range[2]!) === family) {
      list.addRange(range[1]!, range[2]!, type);
    } else if (isIP(entry) === family) {
      list.addAddress(entry, type);
    } else {
      return false;
    }
    return list.check(address, type);
  } catch {
    // A malformed entry (a prefix too long, a range backwards) matches nothing.
    return false;
  }
}
