/** An Express app (4 or 5, with its @types) as a TypeScript user writes it. */
import express, { type Request, type Response } from 'express';
import { analytics } from 'zenovay-express';
import { runConsumerCheck, type SignupAnswer } from './harness.js';

runConsumerCheck('express', (options) => {
  const zenovay = analytics(options);
  const app = express();
  app.use(zenovay);
  app.get('/', (_req: Request, res: Response) => {
    res.type('html').send('<!doctype html><title>Shop</title><h1>Welcome</h1>');
  });
  app.post('/signup', async (req: Request, res: Response) => {
    // Typed on Express's Request by the package's declaration merging.
    const delivered: boolean = await req.track('signup', { plan: 'pro', seats: 3 });
    const answer: SignupAnswer = { delivered, browser: req.analytics.device.browser.name };
    res.json(answer);
  });
  return { listener: app, tracker: zenovay.tracker };
}).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
