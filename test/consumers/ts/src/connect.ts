/** A Connect 3 app (with @types/connect) as a TypeScript user writes it. */
import type { ServerResponse } from 'node:http';
import connect from 'connect';
import { analytics } from 'zenovay-express';
import { runConsumerCheck, type SignupAnswer } from './harness.js';

runConsumerCheck('connect', (options) => {
  const zenovay = analytics(options);
  const app = connect();
  app.use(zenovay);
  app.use('/signup', async (req: connect.IncomingMessage, res: ServerResponse) => {
    // Typed on Connect's request (an http.IncomingMessage) by declaration merging.
    const delivered: boolean = await req.track('signup', { plan: 'pro', seats: 3 });
    const answer: SignupAnswer = { delivered, browser: req.analytics.device.browser.name };
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(answer));
  });
  app.use((_req: connect.IncomingMessage, res: ServerResponse) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end('<!doctype html><title>Shop</title><h1>Welcome</h1>');
  });
  return { listener: app, tracker: zenovay.tracker };
}).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
