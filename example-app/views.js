/**
 * The shop's HTML, as template strings. Every value interpolated with the `html` tag is
 * HTML-escaped unless it is itself the result of `html`, so user input cannot inject markup.
 */
import { formatPrice } from './store.js';

// --- A minimal escaping template tag --------------------------------------------------------

/** Markup that is already safe: the result of `html`. */
class SafeHtml {
  constructor(value) {
    this.value = value;
  }

  toString() {
    return this.value;
  }
}

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (char) => ESCAPES[char]);
}

function render(value) {
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === undefined || value === null || value === false) return '';
  return escapeHtml(value);
}

/** html`<p>${text}</p>`: escapes `text`; arrays are joined; nested html`` is kept as is. */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => {
    out += render(value) + strings[i + 1];
  });
  return new SafeHtml(out);
}

// --- Layout ------------------------------------------------------------------------------------

/** A whole page. `cartCount` is shown in the header. */
function layout({ title, cartCount = 0 }, body) {
  const badge = cartCount > 0 ? html`<span class="badge">${cartCount}</span>` : '';
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · Example Shop</title>
        <link rel="icon" href="/static/logo.svg" type="image/svg+xml" />
        <link rel="stylesheet" href="/static/style.css" />
      </head>
      <body>
        <header class="site-header">
          <a class="brand" href="/"><img src="/static/logo.svg" alt="" /> Example Shop</a>
          <nav>
            <a href="/">Products</a>
            <a href="/cart">Cart ${badge}</a>
          </nav>
        </header>
        <main>${body}</main>
        <footer>
          A demo of <code>zenovay-express</code>: every page you open here is tracked on the server.
        </footer>
      </body>
    </html>`.toString();
}

// --- Pages ---------------------------------------------------------------------------------------

export function homePage({ products, cartCount, shopUrl }) {
  return layout(
    { title: 'Home', cartCount },
    html`<h1>Things you did not know you needed</h1>
      <ul class="products">
        ${products.map(
          (product) =>
            html`<li class="card">
              <h2><a href="/products/${product.slug}">${product.name}</a></h2>
              <p>${product.description}</p>
              <p class="price">${formatPrice(product.price)}</p>
            </li>`,
        )}
      </ul>
      <aside class="try">
        <h2>What to try</h2>
        <ol>
          <li>Open a product, add it to the cart, and check out.</li>
          <li>
            Watch the inspector page (its URL is in the banner of <code>npm start</code>) or the
            terminal: each page shows a <b>pageview</b>, the checkout a <b>purchase</b> event.
          </li>
          <li>
            Assets under <code>/static/</code>, the JSON API under <code>/api/</code>, redirects and
            error pages are not pageviews. Start with <code>DEBUG_ZENOVAY=1</code> to see why each
            of them was skipped.
          </li>
          <li>
            Call the API (an <code>add_to_cart</code> event, sent with <code>req.track</code>):
            <pre>
curl -A 'Mozilla/5.0 Firefox/128.0' -H 'Content-Type: application/json' \\
  -d '{"slug":"gizmo","quantity":2}' ${shopUrl}/api/cart</pre>
          </li>
          <li>
            Play the payment provider (a <code>payment_confirmed</code> event, sent by a standalone
            tracker):
            <pre>
curl -H 'Content-Type: application/json' \\
  -d '{"order_id":"ord_123","amount":19.99}' ${shopUrl}/webhooks/payment</pre>
          </li>
          <li>
            Requests from bots are never counted: <code>curl ${shopUrl}/</code> (curl's default user
            agent) prints nothing.
          </li>
        </ol>
      </aside>`,
  );
}

export function productPage({ product, cartCount }) {
  return layout(
    { title: product.name, cartCount },
    html`<p><a href="/">← All products</a></p>
      <article class="product">
        <h1>${product.name}</h1>
        <p>${product.description}</p>
        <p class="price">${formatPrice(product.price)}</p>
        <form method="post" action="/cart" class="add-to-cart">
          <input type="hidden" name="slug" value="${product.slug}" />
          <label>
            Quantity
            <input type="number" name="quantity" value="1" min="1" max="99" required />
          </label>
          <button type="submit">Add to cart</button>
        </form>
      </article>`,
  );
}

function cartTable({ lines, total }) {
  return html`<table class="cart">
    <thead>
      <tr>
        <th>Product</th>
        <th>Quantity</th>
        <th>Subtotal</th>
      </tr>
    </thead>
    <tbody>
      ${lines.map(
        ({ product, quantity, subtotal }) =>
          html`<tr>
            <td><a href="/products/${product.slug}">${product.name}</a></td>
            <td>${quantity}</td>
            <td>${formatPrice(subtotal)}</td>
          </tr>`,
      )}
    </tbody>
    <tfoot>
      <tr>
        <th colspan="2">Total</th>
        <th>${formatPrice(total)}</th>
      </tr>
    </tfoot>
  </table>`;
}

export function cartPage({ summary }) {
  const body =
    summary.lines.length === 0
      ? html`<h1>Your cart</h1>
          <p>Your cart is empty. <a href="/">Find something nice.</a></p>`
      : html`<h1>Your cart</h1>
          ${cartTable(summary)}
          <p><a class="button" href="/checkout">Check out</a></p>`;
  return layout({ title: 'Cart', cartCount: summary.count }, body);
}

export function checkoutPage({ summary, error }) {
  return layout(
    { title: 'Checkout', cartCount: summary.count },
    html`<h1>Checkout</h1>
      ${error ? html`<p class="error">${error}</p>` : ''} ${cartTable(summary)}
      <form method="post" action="/checkout" class="checkout">
        <label>Name <input name="name" autocomplete="name" required /></label>
        <label>E-mail <input type="email" name="email" autocomplete="email" required /></label>
        <p class="note">Demo only: nothing is charged, and neither field is sent to analytics.</p>
        <button type="submit">Pay ${formatPrice(summary.total)}</button>
      </form>`,
  );
}

export function successPage({ orderId }) {
  const order = orderId ? html`order <code>${orderId}</code>` : 'order';
  return layout(
    { title: 'Thank you' },
    html`<h1>Thank you!</h1>
      <p>Your ${order} is on its way.</p>
      <p>
        The terminal shows the <b>purchase</b> event sent by <code>POST /checkout</code>, then the
        pageview of this page (without its <code>?order=</code> parameter: only
        <code>utm_*</code> parameters leave the server by default).
      </p>
      <p><a href="/">Keep shopping</a></p>`,
  );
}

export function notFoundPage() {
  return layout(
    { title: 'Not found' },
    html`<h1>Not found</h1>
      <p>There is nothing here. <a href="/">Back to the shop.</a></p>`,
  );
}

export function errorPage() {
  return layout(
    { title: 'Error' },
    html`<h1>Something went wrong</h1>
      <p>Sorry about that. <a href="/">Back to the shop.</a></p>`,
  );
}
