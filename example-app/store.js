/**
 * The shop's data: a fixed catalogue and in-memory carts.
 *
 * This is a demo. Carts live in a Map inside the process (they vanish on restart and are not
 * shared between processes) and are found through a random id in a plain cookie. A real shop
 * would use its session store and database here; nothing below is specific to analytics.
 */
import { randomUUID } from 'node:crypto';

/** Prices are in cents, so that sums stay exact. */
export const products = [
  {
    slug: 'widget',
    name: 'Widget',
    price: 1999,
    description: 'The classic. Fits in every pocket and does exactly one thing very well.',
  },
  {
    slug: 'gadget',
    name: 'Gadget',
    price: 3499,
    description: 'A widget with buttons. Three of them, and one even does something.',
  },
  {
    slug: 'gizmo',
    name: 'Gizmo',
    price: 899,
    description: 'Small, shiny and strangely satisfying to hold. Batteries not included.',
  },
];

export function findProduct(slug) {
  return products.find((product) => product.slug === slug);
}

/** `$19.99` for 1999 cents. */
export function formatPrice(cents) {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(cents / 100);
}

// --- Carts -----------------------------------------------------------------------------------

const CART_COOKIE = 'cart';
const MAX_CARTS = 1000;
const MAX_QUANTITY = 99;
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** cart id -> Map(slug -> quantity) */
const carts = new Map();

/** The value of one cookie in a `Cookie` request header, or undefined. */
export function readCookie(header, name) {
  if (typeof header !== 'string') return undefined;
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=');
    if (eq !== -1 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
  }
  return undefined;
}

/** The visitor's cart, or an empty one that is not stored (yet). */
export function cartOf(req) {
  const id = readCookie(req.headers.cookie, CART_COOKIE);
  return (UUID_PATTERN.test(id ?? '') && carts.get(id)) || new Map();
}

/** The visitor's stored cart, created (with its cookie) when there is none. */
function ensureCart(req, res) {
  const id = readCookie(req.headers.cookie, CART_COOKIE);
  if (id && UUID_PATTERN.test(id) && carts.has(id)) return carts.get(id);

  // Keep the demo's memory bounded: forget the oldest cart when there are too many.
  if (carts.size >= MAX_CARTS) carts.delete(carts.keys().next().value);
  const newId = randomUUID();
  const cart = new Map();
  carts.set(newId, cart);
  res.append('Set-Cookie', `${CART_COOKIE}=${newId}; Path=/; HttpOnly; SameSite=Lax`);
  return cart;
}

/** A quantity from a form field or JSON: a whole number from 1 to 99, else undefined. */
export function parseQuantity(value) {
  const quantity = value === undefined || value === '' ? 1 : Number(value);
  return Number.isInteger(quantity) && quantity >= 1 && quantity <= MAX_QUANTITY
    ? quantity
    : undefined;
}

/** Adds `quantity` of a product to the visitor's cart and returns the cart. */
export function addToCart(req, res, product, quantity) {
  const cart = ensureCart(req, res);
  cart.set(product.slug, Math.min((cart.get(product.slug) ?? 0) + quantity, MAX_QUANTITY));
  return cart;
}

export function emptyCart(cart) {
  cart.clear();
}

/** The cart as lines with their product and subtotal, plus the total, all in cents. */
export function summarize(cart) {
  const lines = [];
  for (const [slug, quantity] of cart) {
    const product = findProduct(slug);
    if (product) lines.push({ product, quantity, subtotal: product.price * quantity });
  }
  const total = lines.reduce((sum, line) => sum + line.subtotal, 0);
  const count = lines.reduce((sum, line) => sum + line.quantity, 0);
  return { lines, total, count };
}
