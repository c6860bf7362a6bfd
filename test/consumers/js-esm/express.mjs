/** An Express app (4 or 5, whichever is installed) as an ESM user writes it. */
import express from 'express';
import { analytics } from 'zenovay-express';
import { runConsumerCheck } from './harness.mjs';

try {
  await runConsumerCheck('express', (options) => {
    const zenovay = analytics(options);
    const app = express();
    app.use(zenovay);
    app.get('/', (req, res) => {
      res.type('html').send('<!doctype html><title>Shop</title><h1>Welcome</h1>');
    });
    app.post('/signup', async (req, res) => {
      const delivered = await req.track('signup', { plan: 'pro', seats: 3 });
      res.json({ delivered, browser: req.analytics.device.browser.name });
    });
    return { listener: app, tracker: zenovay.tracker };
  });
} catch (error) {
  console.error(error);
  process.exitCode = 1;
}
