/**
 * The shop itself: an ordinary Express 5 app. Analytics touches it in three places only:
 *
 *   1. `app.use(analyticsMiddleware)` first, so it sees every request. It decides on its own
 *      what is a pageview: a successful HTML response to a GET from a real browser. Static
 *      assets, `/api/`, redirects, error pages, bots and form posts are not.
 *   2. `req.track(name, data)` where something worth counting happens (add to cart, purchase).
 *   3. A standalone tracker where there is no visitor request at all (the payment webhook).
 */
import { fileURLToPath } from 'node:url';
import express from 'express';
import {
  addToCart,
  cartOf,
  emptyCart,
  findProduct,
  formatPrice,
  parseQuantity,
  products,
  summarize,
} from './store.js';
import * as views from './views.js';

const publicDir = fileURLToPath(new URL('./public', import.meta.url));

/**
 * Builds the shop.
 * @param {object} options
 * @param {import('express').RequestHandler} options.analytics the `analytics()` middleware
 * @param {import('zenovay-express').Tracker} options.webhookTracker a `createTracker()` tracker
 * @param {string} options.shopUrl the shop's public origin, e.g. 'http://localhost:3000'
 */
export function createApp({ analytics, webhookTracker, shopUrl }) {
  const app = express();
  app.disable('x-powered-by');
  // Behind a reverse proxy (nginx, a load balancer), tell Express which hops to trust, e.g.
  // app.set('trust proxy', 'loopback'): the middleware then records the visitor's real IP.

  // 1. Analytics first: cheap, never waits on the network, never throws into the app.
  app.use(analytics);

  // Static files: `.css` and `.svg` are assets, never pageviews.
  app.use('/static', express.static(publicDir, { maxAge: '1h' }));

  app.use(express.urlencoded({ extended: false, limit: '10kb' }));
  app.use(express.json({ limit: '10kb' }));

  // --- Pages (each successful GET is a pageview) -----------------------------------------------

  app.get('/', (req, res) => {
    const { count } = summarize(cartOf(req));
    res.send(views.homePage({ products, cartCount: count, shopUrl }));
  });

  app.get('/products/:slug', (req, res, next) => {
    const product = findProduct(req.params.slug);
    if (!product) return next(); // falls through to the 404 page: not a pageview
    const { count } = summarize(cartOf(req));
    res.send(views.productPage({ product, cartCount: count }));
  });

  app.get('/cart', (req, res) => {
    res.send(views.cartPage({ summary: summarize(cartOf(req)) }));
  });

  // A form post is not a pageview; the redirect is not either; the GET /cart that follows is.
  app.post('/cart', (req, res) => {
    const product = findProduct(req.body?.slug);
    const quantity = parseQuantity(req.body?.quantity);
    if (!product || quantity === undefined) {
      res.status(400).send(views.errorPage());
      return;
    }
    addToCart(req, res, product, quantity);
    // 2. A custom event. Its url is the page the form was on (the Referer). No need to await:
    // the promise never rejects, and the visitor should not wait for analytics.
    void req.track('add_to_cart', {
      product_id: product.slug,
      quantity,
      value: (product.price * quantity) / 100,
      currency: 'USD',
    });
    res.redirect(303, '/cart');
  });

  app.get('/checkout', (req, res) => {
    const summary = summarize(cartOf(req));
    if (summary.lines.length === 0) {
      res.redirect('/cart');
      return;
    }
    res.send(views.checkoutPage({ summary }));
  });

  app.post('/checkout', (req, res) => {
    const cart = cartOf(req);
    const summary = summarize(cart);
    if (summary.lines.length === 0) {
      res.redirect(303, '/cart');
      return;
    }
    const name = String(req.body?.name ?? '').trim();
    const email = String(req.body?.email ?? '').trim();
    if (name === '' || !email.includes('@')) {
      res.status(422).send(views.checkoutPage({ summary, error: 'Please fill in both fields.' }));
      return;
    }

    // (A real shop would create the order and start the payment here.)
    const orderId = `ord_${Date.now().toString(36)}`;
    // Only what analytics needs: no name, no e-mail.
    void req.track('purchase', {
      order_id: orderId,
      value: summary.total / 100,
      currency: 'USD',
      items: summary.lines.map(({ product, quantity }) => ({
        id: product.slug,
        name: product.name,
        price: product.price / 100,
        quantity,
      })),
    });
    emptyCart(cart);
    res.redirect(303, `/checkout/success?order=${encodeURIComponent(orderId)}`);
  });

  app.get('/checkout/success', (req, res) => {
    const orderId = typeof req.query.order === 'string' ? req.query.order : undefined;
    res.send(views.successPage({ orderId }));
  });

  // --- JSON API (never pageviews, but req.track works here too) ------------------------------

  app.get('/api/products', (_req, res) => {
    res.json(
      products.map(({ slug, name, price }) => ({
        slug,
        name,
        price: price / 100,
        display_price: formatPrice(price),
        url: `${shopUrl}/products/${slug}`,
      })),
    );
  });

  app.get('/api/cart', (req, res) => {
    res.json(cartJson(summarize(cartOf(req))));
  });

  app.post('/api/cart', (req, res) => {
    const product = findProduct(req.body?.slug);
    const quantity = parseQuantity(req.body?.quantity);
    if (!product || quantity === undefined) {
      res.status(400).json({ error: 'expected {"slug": "widget", "quantity": 1..99}' });
      return;
    }
    const cart = addToCart(req, res, product, quantity);
    // The event's url is the page that called the API (its Referer), when there is one.
    void req.track('add_to_cart', {
      product_id: product.slug,
      quantity,
      value: (product.price * quantity) / 100,
      currency: 'USD',
      source: 'api',
    });
    res.json(cartJson(summarize(cart)));
  });

  // --- Webhook (called by the payment provider, not by a visitor) ----------------------------

  app.post('/webhooks/payment', async (req, res) => {
    // A real webhook must first verify the provider's signature; a demo takes the body on trust.
    const { order_id: orderId, amount } = req.body ?? {};
    if (typeof orderId !== 'string' || orderId === '' || typeof amount !== 'number') {
      res.status(400).json({ error: 'expected {"order_id": "ord_123", "amount": 19.99}' });
      return;
    }
    // 3. The standalone tracker. `req.track` would be wrong here: this request comes from the
    // provider, not the visitor (and a provider's user agent is often a crawler-like bot, as
    // Stripe's is, which req.track would filter out).
    // There is no visitor to forward, so say which page the event belongs to.
    // Awaiting is optional: it resolves true once the endpoint accepted the event, false
    // otherwise (it never rejects). It holds the response until then, retries included, which
    // can take many seconds when the endpoint is down: leave out `await` if your provider
    // gives up on slow webhooks.
    const tracked = await webhookTracker.trackEvent(
      'payment_confirmed',
      { order_id: orderId, amount },
      { url: `${shopUrl}/checkout/success` },
    );
    res.status(200).json({ received: true, tracked });
  });

  // --- Errors (a 404 or 500 page is never a pageview) -----------------------------------------

  app.use((req, res) => {
    if (wantsJson(req)) res.status(404).json({ error: 'not found' });
    else res.status(404).send(views.notFoundPage());
  });

  // Express recognises an error handler by its four parameters.
  app.use((error, req, res, _next) => {
    const status = error.status ?? error.statusCode ?? 500;
    if (status >= 500) console.error(error);
    if (wantsJson(req))
      res.status(status).json({ error: status >= 500 ? 'internal' : error.message });
    else res.status(status).send(status === 404 ? views.notFoundPage() : views.errorPage());
  });

  return app;
}

function cartJson({ lines, total, count }) {
  return {
    items: lines.map(({ product, quantity, subtotal }) => ({
      slug: product.slug,
      quantity,
      subtotal: subtotal / 100,
    })),
    count,
    total: total / 100,
  };
}

function wantsJson(req) {
  return req.path.startsWith('/api/') || req.path.startsWith('/webhooks/');
}
