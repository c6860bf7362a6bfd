/**
 * One helper that builds the same small site on Express 5, Express 4 and Connect around the
 * middleware, so every rule is tested on each framework.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import http from 'node:http';
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
