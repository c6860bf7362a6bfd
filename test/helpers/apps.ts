/**
 * One helper that builds the same small site on Express 5, Express 4 and Connect around the
 * middleware, so every rule is tested on each framework.
 */
import { channel } from 'node:diagnostics_channel';
import http, { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import connect from 'connect';
import express5 from 'express';
import type { AnalyticsMiddleware } from '../../src/index';

// express4 is the same package at major 4, installed under an alias; its API matches here.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as typeof express5;

export type Framework = 'express5' | 'express4' | 'connect';
export const FRAMEWORKS: Framework[] = ['express5', 'express4', 'connect'];

export interface SiteOptions {
  /** Express `trust proxy` setting (ignored by Connect). */
  trustProxy?: unknown;
  /** Mount the middleware twice. */
  mountTwice?: boolean;
}

type Req = IncomingMessage & { body?: unknown };
type Handler = (req: Req, res: ServerResponse) => void;

const html = (res: ServerResponse, body: string, status = 200) => {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!doctype html><title>${body}</title><h1>${body}</h1>`);
};

/** The routes of the test site, framework-neutral. */
export const routes: Record<string, Handler> = {
  'GET /': (_req, res) => html(res, 'home'),
  'GET /products/widget': (_req, res) => html(res, 'widget'),
  'GET /not-found': (_req, res) => html(res, 'not found', 404),
  'GET /broken': (_req, res) => html(res, 'broken', 500),
  'GET /moved': (_req, res) => {
    res.statusCode = 302;
    res.setHeader('location', '/');
    res.end();
  },
  'GET /cached': (_req, res) => {
    res.statusCode = 304;
    res.end();
  },
  'GET /plain': (_req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end('plain');
  },
  'GET /style.css': (_req, res) => {
    res.setHeader('content-type', 'text/css');
    res.end('body{}');
  },
  'GET /api/items': (req, res) => {
    void req.track('items_listed', { count: 2 });
    res.setHeader('content-type', 'application/json');
    res.end('[1,2]');
  },
  'GET /api/html': (_req, res) => html(res, 'api html'),
  'GET /robots.txt': (_req, res) => html(res, 'robots'),
  'POST /checkout': (req, res) => {
    void req.track('purchase', { order_id: 'ORD-1', value: 99.99, currency: 'USD' });
    res.statusCode = 303;
    res.setHeader('location', '/thanks');
    res.end();
  },
  'GET /thanks': (req, res) => {
    void req.track('thanks_seen');
    html(res, 'thanks');
  },
};

/** A plain `http.Server` running the site on the chosen framework. */
export function buildSite(
  framework: Framework,
  middleware: AnalyticsMiddleware,
  options: SiteOptions = {},
): http.Server {
  const dispatch = (req: Req, res: ServerResponse, next: () => void) => {
    const path = (req.url ?? '/').split('?')[0];
    const handler = routes[`${req.method} ${path}`];
    if (handler) handler(req, res);
    else next();
  };
  const notFound = (_req: Req, res: ServerResponse) => html(res, 'no route', 404);

  if (framework === 'connect') {
    const app = connect();
    app.use(middleware);
    if (options.mountTwice) app.use(middleware);
    app.use(dispatch as connect.NextHandleFunction);
    app.use(notFound as connect.NextHandleFunction);
    return http.createServer(app);
  }
  const app = framework === 'express5' ? express5() : express4();
  if (options.trustProxy !== undefined) app.set('trust proxy', options.trustProxy);
  app.use(middleware);
  if (options.mountTwice) app.use(middleware);
  app.use(dispatch as unknown as express5.RequestHandler);
  app.use(notFound as unknown as express5.RequestHandler);
  return http.createServer(app);
}

export const BROWSER_UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';
export const GOOGLEBOT_UA =
  'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)';

/**
 * A GET request for `path` and its response, made by hand as a test tool makes them (no server
 * announced them), from a browser on 203.0.113.7 to `shop.example`.
 */
export function handMadeRequest(path: string): { req: IncomingMessage; res: ServerResponse } {
  const socket = { remoteAddress: '203.0.113.7', remotePort: 40000, encrypted: false };
  const req = new IncomingMessage(socket as never);
  req.method = 'GET';
  req.url = path;
  req.headers = { host: 'shop.example', 'user-agent': BROWSER_UA, accept: 'text/html' };
  return { req, res: new ServerResponse(req) };
}

/**
 * {@link handMadeRequest}, announced on `http.server.request.start` as Node's server announces
 * each request; nothing announces its finish.
 */
export function announcedRequest(path: string): { req: IncomingMessage; res: ServerResponse } {
  const made = handMadeRequest(path);
  channel('http.server.request.start').publish({ request: made.req, response: made.res });
  return made;
}

/**
 * Mounts `middleware` on `app`, then a route that answers a page and notes the 'finish'
 * listeners each response has (Node's server adds one of its own): the notes, in order.
 */
export function countFinishListeners(
  app: { use(handler: (req: IncomingMessage, res: ServerResponse) => void): unknown },
  middleware: AnalyticsMiddleware,
): number[] {
  const listeners: number[] = [];
  app.use(middleware as unknown as (req: IncomingMessage, res: ServerResponse) => void);
  app.use((_req, res) => {
    listeners.push(res.listenerCount('finish'));
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end('<p>page</p>');
  });
  return listeners;
}

/** Ends a hand-made response as a 200 HTML page: its 'finish', as a server would emit it. */
export function finishAsPage(res: ServerResponse): void {
  res.statusCode = 200;
  res.setHeader('content-type', 'text/html');
  res.emit('finish');
}

/**
 * Serves `handler` on 127.0.0.1 and GETs each path in turn with a browser's user agent, each
 * answered 200; returns the server's base URL (the server is closed by then).
 */
export async function serveEach(handler: http.RequestListener, paths: string[]): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    for (const path of paths) {
      const res = await fetch(base + path, { headers: { 'user-agent': BROWSER_UA } });
      expect(res.status).toBe(200);
      await res.text();
    }
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  return base;
}
