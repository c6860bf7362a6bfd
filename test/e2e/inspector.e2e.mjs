/**
 * End to end, in a real browser: the example shop with its local collector's inspector page.
 * Starts `node example-app/server.js` (as `npm start` does, on a free port), opens the inspector
 * in one tab, clicks through the shop in another (home, a product, add to cart, checkout), and
 * reads the inspector's DOM: every pageview and event arrives, counts and tracker stats follow,
 * visitor-controlled strings stay text, and Ctrl-C ends it all.
 *
 * Needs the built package (`npm run build`), playwright-core, and a Chromium:
 *   node test/e2e/inspector.e2e.mjs
 * Environment: CHROMIUM_PATH (default /usr/bin/chromium), SCREENSHOT (default
 * /tmp/inspector.png: the inspector at the end of the visit).
 */
/* global document, window */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const screenshotPath = process.env.SCREENSHOT || '/tmp/inspector.png';
// A desktop browser's user agent: the shop (rightly) counts HeadlessChrome as a bot.
const userAgent =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36';
const TIMEOUT = 10_000;

const started = Date.now();
const results = [];
let shop;
let browser;

async function step(name, fn) {
  if (results.some((r) => !r.ok)) {
    results.push({ name, ok: false, skipped: true });
    console.log(`- ${name} (skipped)`);
    return;
  }
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`✓ ${name} (${Date.now() - t0} ms)`);
  } catch (error) {
    results.push({ name, ok: false });
    console.log(`✗ ${name}\n  ${String(error?.stack ?? error).replace(/\n/g, '\n  ')}`);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Starts the shop; resolves its output so far, growing, and the URLs its banner printed. */
async function startShop(port) {
  const env = { ...process.env, PORT: String(port), NO_COLOR: '1' };
  delete env.ZENOVAY_TRACKING_CODE;
  delete env.NODE_ENV;
  delete env.SITE_URL;
  const child = spawn(process.execPath, ['example-app/server.js'], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { text: '' };
  child.stdout.setEncoding('utf8').on('data', (chunk) => (output.text += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk) => (output.text += chunk));
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const page = /Watch them arrive live in your browser: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(
      output.text,
    );
    if (page) return { child, output, exited, pageUrl: page[1] };
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the shop did not print the inspector URL:\n${output.text}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The inspector's card for an event: its type, and its title (a pageview's path, an event's name). */
function card(page, type, title) {
  const escaped = title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const exact = new RegExp(`^${escaped}$`);
  return page
    .locator(`#events li.event[data-type="${type}"]`)
    .filter({ has: page.locator('.event-title', { hasText: exact }) });
}

async function field(cardLocator, name) {
  return cardLocator.first().locator(`[data-field="${name}"]`).textContent();
}

/** The count shown for `key` in one of the count tables (`pageviews` or `event-names`). */
function countOf(page, table, key) {
  return page.evaluate(
    ({ table, key }) => {
      const row = Array.from(document.querySelectorAll(`#${table} tbody tr`)).find(
        (r) => r.dataset.key === key,
      );
      return row ? Number(row.querySelector('.num').textContent) : 0;
    },
    { table, key },
  );
}

// `npm test` runs this too. Without Chromium a developer's run says so and skips; CI (CI=true,
// where .ci/run installs Chromium) fails instead, so the check can never be skipped silently.
if (!existsSync(executablePath) && process.env.CI !== 'true') {
  console.log(
    `inspector e2e: skipped, no Chromium at ${executablePath} (apt-get install -y chromium, or set CHROMIUM_PATH).`,
  );
  process.exit(0);
}

try {
  check(
    existsSync(`${root}/dist/testing/index.js`),
    'dist/ is missing: run `npm run build` first.',
  );
  check(
    existsSync(executablePath),
    `no Chromium at ${executablePath}: apt-get install -y chromium, or set CHROMIUM_PATH.`,
  );
  const { chromium } = await import('playwright-core').catch(() => {
    throw new Error('playwright-core is missing: npm install (it is a devDependency).');
  });
  const port = await freePort();
  const shopUrl = `http://127.0.0.1:${port}`;
  let inspector;
  let visitor;
  const pageErrors = [];
  const expectedPageviews = ['/', '/products/widget', '/cart', '/checkout', '/checkout/success'];

  await step('the shop starts and its banner prints the inspector URL', async () => {
    shop = await startShop(port);
    check(
      shop.output.text.includes(`Example Shop is running at http://localhost:${port}`),
      shop.output.text,
    );
  });

  await step('the inspector page opens and goes live', async () => {
    browser = await chromium.launch({
      executablePath,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const context = await browser.newContext({ userAgent, viewport: { width: 1280, height: 900 } });
    inspector = await context.newPage();
    inspector.on('pageerror', (error) => pageErrors.push(`pageerror: ${error.message}`));
    inspector.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(`console: ${message.text()}`);
    });
    await inspector.goto(shop.pageUrl);
    await inspector.locator('#status[data-state="live"]').waitFor({ timeout: TIMEOUT });
    check((await inspector.title()) === 'Zenovay inspector', 'unexpected title');
    const collectorUrl = await inspector.locator('#collector-url').textContent();
    check(`${collectorUrl}/` === shop.pageUrl, `collector URL shown: ${collectorUrl}`);
    visitor = await context.newPage();
  });

  await step('the home page: a pageview of / arrives', async () => {
    await visitor.goto(`${shopUrl}/`);
    const home = card(inspector, 'pageview', '/');
    await home.first().waitFor({ timeout: TIMEOUT });
    check((await field(home, 'url')) === `${shopUrl}/`, 'home url');
    check((await field(home, 'ip')) === '127.0.0.1', 'home ip');
    check((await field(home, 'userAgent')) === userAgent, 'home user agent');
    check((await field(home, 'trackingCode')) === 'example-shop', 'tracking code');
  });

  await step('a product page: its pageview, with the home page as referrer', async () => {
    await visitor.click('a[href="/products/widget"]');
    await visitor.waitForURL(`${shopUrl}/products/widget`);
    const product = card(inspector, 'pageview', '/products/widget');
    await product.first().waitFor({ timeout: TIMEOUT });
    check((await field(product, 'referrer')) === `${shopUrl}/`, 'product referrer');
  });

  await step(
    'add to cart: an add_to_cart event with its data, then the /cart pageview',
    async () => {
      await visitor.fill('input[name="quantity"]', '2');
      await visitor.click('form.add-to-cart button[type="submit"]');
      await visitor.waitForURL(`${shopUrl}/cart`);
      const added = card(inspector, 'event', 'add_to_cart');
      await added.first().waitFor({ timeout: TIMEOUT });
      check((await field(added, 'url')) === `${shopUrl}/products/widget`, 'add_to_cart url');
      const data = JSON.parse(await field(added, 'data'));
      check(
        data.product_id === 'widget' && data.quantity === 2,
        `add_to_cart data ${JSON.stringify(data)}`,
      );
      await card(inspector, 'pageview', '/cart').first().waitFor({ timeout: TIMEOUT });
    },
  );

  await step(
    'checkout: the form submit sends a purchase event, then /checkout/success',
    async () => {
      await visitor.click('a[href="/checkout"]');
      await visitor.waitForURL(`${shopUrl}/checkout`);
      await visitor.fill('input[name="name"]', 'Ada Lovelace');
      await visitor.fill('input[name="email"]', 'ada@example.com');
      await visitor.click('form.checkout button[type="submit"]');
      await visitor.waitForURL(/\/checkout\/success\?order=ord_/);
      const purchase = card(inspector, 'event', 'purchase');
      await purchase.first().waitFor({ timeout: TIMEOUT });
      const data = JSON.parse(await field(purchase, 'data'));
      check(/^ord_/.test(data.order_id), `purchase order ${data.order_id}`);
      check(data.currency === 'USD' && data.items?.[0]?.id === 'widget', JSON.stringify(data));
      check(data.items[0].quantity === 2, 'purchase quantity');
      // Only what analytics needs: the form's name and e-mail never leave the server.
      const text = await inspector.locator('#events').textContent();
      check(
        !text.includes('Ada Lovelace') && !text.includes('ada@example.com'),
        'personal data shown',
      );
      await card(inspector, 'pageview', '/checkout/success').first().waitFor({ timeout: TIMEOUT });
    },
  );

  await step('counts: pageviews by path and events by name', async () => {
    // The count tables are drawn up to 50 ms after the last card (the page gathers redraws):
    // wait for them to show the last pageview before reading them.
    await inspector.waitForFunction(
      () =>
        Array.from(document.querySelectorAll('#pageviews tbody tr')).some(
          (r) => r.dataset.key === '/checkout/success',
        ),
      undefined,
      { timeout: TIMEOUT },
    );
    for (const path of expectedPageviews) {
      check((await countOf(inspector, 'pageviews', path)) === 1, `pageviews of ${path}`);
    }
    check((await countOf(inspector, 'event-names', 'add_to_cart')) === 1, 'add_to_cart count');
    check((await countOf(inspector, 'event-names', 'purchase')) === 1, 'purchase count');
    check((await inspector.locator('#total-pageviews').textContent()) === '5', 'total pageviews');
    check((await inspector.locator('#total-events').textContent()) === '2', 'total events');
    const pageviewCards = await inspector.locator('#events li.event[data-type="pageview"]').count();
    check(
      pageviewCards === 5,
      `${pageviewCards} pageview cards (assets, redirects, posts are not)`,
    );
  });

  await step(
    "tracker stats: the shop's tracker delivered all 7, none failed or dropped",
    async () => {
      await inspector.waitForFunction(
        () => {
          const tracker = document.querySelector(
            '#trackers .tracker[data-name="pages and req.track"]',
          );
          const stat = (name) =>
            Number(tracker?.querySelector(`tr[data-stat="${name}"] .num`)?.textContent);
          return (
            stat('delivered') === 7 &&
            stat('failed') === 0 &&
            stat('dropped') === 0 &&
            // The adaptive in-flight limit, and the latency it sees.
            stat('in-flight limit') >= 4 &&
            /^\d+(\.\d+)? ms$/.test(
              tracker?.querySelector('tr[data-stat="latency"] .num')?.textContent ?? '',
            )
          );
        },
        undefined,
        { timeout: TIMEOUT },
      );
      const webhook = inspector.locator('#trackers .tracker[data-name="webhook tracker"]');
      check((await webhook.count()) === 1, 'the webhook tracker is listed');
    },
  );

  await step('visitor-controlled strings are shown as text, never run', async () => {
    const { collectorUrl } = await (await fetch(`${shop.pageUrl}api/state`)).json();
    const nasty = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
    const res = await fetch(`${collectorUrl}/e/e2e`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': '<b>bold</b>' },
      body: JSON.stringify({
        type: 'event',
        name: nasty,
        url: 'https://x.example/"><svg onload=alert(1)>',
        data: { note: '</pre><iframe src="javascript:alert(1)"></iframe>' },
      }),
    });
    check(res.status === 202, `collector answered ${res.status}`);
    const shown = card(inspector, 'event', nasty);
    await shown.first().waitFor({ timeout: TIMEOUT });
    check((await field(shown, 'userAgent')) === '<b>bold</b>', 'user agent as text');
    check(JSON.parse(await field(shown, 'data')).note.startsWith('</pre><iframe'), 'data as text');
    const injected = await inspector.evaluate(() => ({
      elements: document.querySelectorAll(
        '#events img, #events script, #events svg, #events iframe, #events b, main img, main iframe',
      ).length,
      pwned: window.__pwned,
    }));
    check(injected.elements === 0, `${injected.elements} injected element(s) in the page`);
    check(injected.pwned === undefined, 'an injected script ran');
  });

  await step('the page logged no errors (its CSP allows its own script and style)', async () => {
    check(pageErrors.length === 0, pageErrors.join('\n'));
  });

  await step(`screenshot of the inspector: ${screenshotPath}`, async () => {
    await inspector.screenshot({ path: screenshotPath, fullPage: true, animations: 'disabled' });
  });

  await step('the terminal printed the events too', async () => {
    for (const line of ['→ pageview', '→ event add_to_cart', '→ event purchase']) {
      check(shop.output.text.includes(line), `no "${line}" in:\n${shop.output.text}`);
    }
  });

  await step("Ctrl-C stops the shop and its inspector; the page's stream ends", async () => {
    shop.child.kill('SIGINT');
    const timer = setTimeout(() => shop.child.kill('SIGKILL'), TIMEOUT);
    const { code, signal } = await shop.exited;
    clearTimeout(timer);
    // closeOnShutdown() ends the process with the signal it received, once all is closed.
    check(
      signal === 'SIGINT' || code === 0,
      `the shop exited with ${code ?? signal}:\n${shop.output.text}`,
    );
    check(shop.output.text.includes('Bye.'), 'no "Bye." printed');
    await inspector.locator('#status:not([data-state="live"])').waitFor({ timeout: TIMEOUT });
  });
} catch (error) {
  results.push({ name: 'setup', ok: false });
  console.log(`✗ ${String(error?.stack ?? error)}`);
} finally {
  await browser?.close().catch(() => undefined);
  if (shop && shop.child.exitCode === null && shop.child.signalCode === null) {
    shop.child.kill('SIGKILL');
  }
}

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
console.log(`\ninspector e2e: ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
