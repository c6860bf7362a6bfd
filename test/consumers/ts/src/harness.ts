/**
 * The check every consumer app runs, TypeScript flavour (compiled as CommonJS or ESM by the
 * tsconfig in use): start a test collector from `zenovay-express/testing`, serve the app, load
 * its page and its `req.track` route like a browser would, and check that the pageview and the
 * event reached the collector.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Tracker, TrackerOptions } from 'zenovay-express';
import { createTestCollector, type RecordedEvent } from 'zenovay-express/testing';

const BROWSER =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';

export interface ConsumerApp {
  listener: http.RequestListener;
  tracker: Tracker;
}

export type BuildApp = (
  options: Required<Pick<TrackerOptions, 'trackingCode' | 'host'>>,
) => ConsumerApp;

/** What the `/signup` route answers. */
export interface SignupAnswer {
  delivered: boolean;
  browser: string | undefined;
}

export async function runConsumerCheck(label: string, build: BuildApp): Promise<void> {
  const collector = await createTestCollector();
  const { listener, tracker } = build({ trackingCode: 'consumer-test', host: collector.url });
  const server = http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
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
    const answer = (await signup.json()) as SignupAnswer;
    assert.deepEqual(answer, { delivered: true, browser: 'Chrome' });

    const isPageview = (e: RecordedEvent) => e.type === 'pageview';
    const [pageview] = await collector.waitFor(1, { filter: isPageview });
    assert.equal(pageview?.url, `${base}/`);
    assert.equal(pageview?.trackingCode, 'consumer-test');
    const [event] = await collector.waitFor(1, { filter: (e) => e.type === 'event' });
    assert.equal(event?.name, 'signup');
    assert.deepEqual(event?.data, { plan: 'pro', seats: 3 });
    assert.equal(event?.url, `${base}/`);
    assert.equal(collector.events.length, 2);
    console.log(`ok ${label}: pageview and event arrived`);
  } finally {
    await tracker.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await collector.close();
  }
}
