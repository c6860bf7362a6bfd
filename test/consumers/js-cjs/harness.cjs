/**
 * The check every consumer app runs, CommonJS flavour: start a test collector from
 * `zenovay-express/testing`, serve the app, load its page and its `req.track` route like a
 * browser would, and check that the pageview and the event reached the collector.
 */
const assert = require('node:assert/strict');
const http = require('node:http');
const path = require('node:path');
const { createTestCollector } = require('zenovay-express/testing');

const BROWSER =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';

/** `build({ trackingCode, host })` returns `{ listener, tracker }`: the app and its tracker. */
async function runConsumerCheck(label, build) {
  // require() must get the CommonJS build, which carries p-queue inside.
  assert.equal(path.basename(require.resolve('zenovay-express')), 'index.cjs');

  const collector = await createTestCollector();
  const { listener, tracker } = build({ trackingCode: 'consumer-test', host: collector.url });
  const server = http.createServer(listener);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    const page = await fetch(`${base}/`, { headers: { 'user-agent': BROWSER } });
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(await page.text(), /<h1>Welcome<\/h1>/);

    const signup = await fetch(`${base}/signup`, {
      method: 'POST',
      headers: { 'user-agent': BROWSER, referer: `${base}/` },
    });
    assert.equal(signup.status, 200);
    assert.deepEqual(await signup.json(), { delivered: true, browser: 'Chrome' });

    const [pageview] = await collector.waitFor(1, { filter: (e) => e.type === 'pageview' });
    assert.equal(pageview.url, `${base}/`);
    assert.equal(pageview.trackingCode, 'consumer-test');
    const [event] = await collector.waitFor(1, { filter: (e) => e.type === 'event' });
    assert.equal(event.name, 'signup');
    assert.deepEqual(event.data, { plan: 'pro', seats: 3 });
    assert.equal(event.url, `${base}/`);
    assert.equal(collector.events.length, 2);
    console.log(`ok ${label}: pageview and event arrived`);
  } finally {
    await tracker.close();
    await new Promise((resolve) => server.close(resolve));
    await collector.close();
  }
}

module.exports = { runConsumerCheck };
