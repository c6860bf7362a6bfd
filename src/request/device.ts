/**
 * Browser, OS and device type from the user agent (ua-parser-js 1.x, MIT). Parsed only when app
 * code reads `req.analytics.device`, and remembered per user agent in a bounded cache.
 */
import UAParser from 'ua-parser-js';

export interface DeviceInfo {
  browser: { name?: string; version?: string };
  os: { name?: string; version?: string };
  /** `type` is ua-parser's: 'mobile', 'tablet', 'smarttv', 'console', 'wearable', 'embedded'; undefined for desktops. */
  device: { type?: string; vendor?: string; model?: string };
}

const CACHE_LIMIT = 500;
const MAX_LENGTH = 512;
const cache = new Map<string, DeviceInfo>();

export function parseDevice(userAgent: string | undefined): DeviceInfo {
  const ua = (userAgent ?? '').slice(0, MAX_LENGTH);
  const known = cache.get(ua);
  if (known) return known;
  const result = new UAParser(ua).getResult();
  const info: DeviceInfo = Object.freeze({
    browser: Object.freeze(defined({ name: result.browser.name, version: result.browser.version })),
    os: Object.freeze(defined({ name: result.os.name, version: result.os.version })),
    device: Object.freeze(
      defined({
        type: result.device.type,
        vendor: result.device.vendor,
        model: result.device.model,
      }),
    ),
  });
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  cache.set(ua, info);
  return info;
}

function defined<T extends Record<string, string | undefined>>(fields: T): Partial<T> {
  const out: Partial<T> = {};
  for (const key in fields) if (fields[key] !== undefined) out[key] = fields[key];
  return out;
}
