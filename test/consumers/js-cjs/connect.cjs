/** A Connect 3 app as a CommonJS user writes it. */
const connect = require('connect');
const { analytics } = require('zenovay-express');
const { runConsumerCheck } = require('./harness.cjs');

runConsumerCheck('connect', (options) => {
  const zenovay = analytics(options);
  const app = connect();
  app.use(zenovay);
  app.use('/signup', async (req, res) => {
    const delivered = await req.track('signup', { plan: 'pro', seats: 3 });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ delivered, browser: req.analytics.device.browser.name }));
  });
  app.use((req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end('<!doctype html><title>Shop</title><h1>Welcome</h1>');
  });
  return { listener: app, tracker: zenovay.tracker };
}).catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
