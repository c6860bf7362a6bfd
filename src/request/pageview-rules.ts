/**
 * Why a request is not a pageview: a reason, or null when it is one. Split in two: what the
 * request alone tells (checked when it arrives, cheapest first) and what only the finished
 * response tells (status, content type, the user's `skip`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AnalyticsConfig, PathPattern } from '../options.js';

export type SkipReason =
  | 'method'
  | 'asset'
  | 'api'
  | 'well_known'
  | 'skip_path'
  | 'prefetch'
  | 'bot'
  | 'privacy_signal'
  | 'status'
  | 'not_html'
  | 'skip_option';

/** Extensions of files that are never pages: scripts, styles, images, fonts, media, maps, archives, feeds, data. */
// prettier-ignore
export const ASSET_EXTENSIONS: ReadonlySet<string> = new Set([
  // scripts, styles, source maps, wasm
  'js', 'mjs', 'cjs', 'jsx', 'ts', 'tsx', 'css', 'scss', 'sass', 'less', 'map', 'wasm',
  // images
  'png', 'jpg', 'jpeg', 'gif', 'webp', 'avif', 'svg', 'svgz', 'ico', 'cur', 'bmp', 'tif', 'tiff',
  'heic', 'heif', 'apng', 'jxl',
  // fonts
  'woff', 'woff2', 'ttf', 'otf', 'eot',
  // audio and video
  'mp3', 'mp4', 'm4a', 'm4v', 'webm', 'weba', 'ogg', 'oga', 'ogv', 'opus', 'wav', 'flac', 'aac',
  'mov', 'avi', 'mkv', 'm3u8', 'vtt', 'srt',
  // documents and archives
  'pdf', 'zip', 'gz', 'tgz', 'bz2', 'xz', 'zst', 'br', '7z', 'rar', 'tar', 'dmg', 'exe', 'apk',
  // feeds and data
  'rss', 'atom', 'xml', 'json', 'jsonld', 'txt', 'csv', 'webmanifest', 'ics',
]);

const WELL_KNOWN_FILES: ReadonlySet<string> = new Set([
  '/robots.txt',
  '/sitemap.xml',
  '/sitemap_index.xml',
  '/favicon.ico',
  '/ads.txt',
  '/app-ads.txt',
  '/humans.txt',
  '/security.txt',
  '/browserconfig.xml',
  '/manifest.json',
  '/site.webmanifest',
]);

/** The extension of the last path segment, lower-cased, or '' when there is none. */
export function extensionOf(path: string): string {
  const dot = path.lastIndexOf('.');
  if (dot === -1 || path.indexOf('/', dot) !== -1) return '';
  return path.slice(dot + 1).toLowerCase();
}

export function isAssetPath(path: string): boolean {
  const ext = extensionOf(path);
  return ext !== '' && ASSET_EXTENSIONS.has(ext);
}

export function isApiPath(path: string): boolean {
  return path === '/api' || path.startsWith('/api/');
}

export function isWellKnownPath(path: string): boolean {
  return (
    path.startsWith('/.well-known/') ||
    path.startsWith('/apple-touch-icon') ||
    WELL_KNOWN_FILES.has(path.toLowerCase())
  );
}

export function matchesSkipPath(path: string, patterns: readonly PathPattern[]): boolean {
  for (const pattern of patterns) {
    if (typeof pattern === 'string' ? path.startsWith(pattern) : pattern.test(path)) return true;
  }
  return false;
}

/** A browser fetching ahead of a click (speculation rules, `<link rel=prefetch>`, Firefox). */
export function isPrefetch(headers: IncomingMessage['headers']): boolean {
  const secPurpose = headers['sec-purpose'];
  if (typeof secPurpose === 'string' && /prefetch|prerender/i.test(secPurpose)) return true;
  const purpose = headers['purpose'] ?? headers['x-purpose'];
  if (typeof purpose === 'string' && /prefetch|preview/i.test(purpose)) return true;
  const moz = headers['x-moz'];
  return typeof moz === 'string' && moz.toLowerCase() === 'prefetch';
}

/** The visitor asked not to be tracked: Global Privacy Control or Do Not Track. */
export function hasPrivacySignal(headers: IncomingMessage['headers']): boolean {
  return headers['sec-gpc'] === '1' || headers['dnt'] === '1';
}

type RuleConfig = Pick<
  AnalyticsConfig,
  | 'skipAssets'
  | 'skipApi'
  | 'skipWellKnown'
  | 'skipPaths'
  | 'skipPrefetch'
  | 'skipBots'
  | 'respectPrivacySignals'
>;

/** What the rules need to know of the visitor; `isBot` is only read when bots are skipped. */
export interface VisitorFacts {
  readonly isBot: boolean;
}

/** Rules about the visitor, shared by pageviews and `req.track`. */
export function visitorSkipReason(
  headers: IncomingMessage['headers'],
  visitor: VisitorFacts,
  config: Pick<RuleConfig, 'skipBots' | 'respectPrivacySignals'>,
): SkipReason | null {
  if (config.skipBots && visitor.isBot) return 'bot';
  if (config.respectPrivacySignals && hasPrivacySignal(headers)) return 'privacy_signal';
  return null;
}

/** What the request alone says against a pageview, cheapest checks first. */
export function requestSkipReason(
  method: string | undefined,
  path: string,
  headers: IncomingMessage['headers'],
  visitor: VisitorFacts,
  config: RuleConfig,
): SkipReason | null {
  if (method !== 'GET') return 'method';
  if (config.skipAssets && isAssetPath(path)) return 'asset';
  if (config.skipApi && isApiPath(path)) return 'api';
  if (config.skipWellKnown && isWellKnownPath(path)) return 'well_known';
  if (config.skipPaths.length > 0 && matchesSkipPath(path, config.skipPaths)) return 'skip_path';
  if (config.skipPrefetch && isPrefetch(headers)) return 'prefetch';
  return visitorSkipReason(headers, visitor, config);
}

/** The default `countStatus`: `2xx` and `304` are pages; redirects and errors are not. */
export function isPageStatus(status: number): boolean {
  return (status >= 200 && status < 300) || status === 304;
}

/** Is this a page response: `text/html` (or XHTML), or a `304` without a content type. */
export function isHtmlResponse(status: number, contentType: unknown): boolean {
  const value = Array.isArray(contentType) ? contentType[0] : contentType;
  if (value === undefined) return status === 304;
  if (typeof value !== 'string') return false;
  // What Express's res.type('html') and most apps set, without copying the string.
  if (value.startsWith('text/html')) return true;
  const type = value.trimStart().slice(0, 21).toLowerCase();
  return type.startsWith('text/html') || type.startsWith('application/xhtml+xml');
}

/** What the finished response says against a pageview. */
export function responseSkipReason(
  req: IncomingMessage,
  res: ServerResponse,
  config: Pick<AnalyticsConfig, 'countStatus' | 'skip'>,
): SkipReason | null {
  const status = res.statusCode;
  if (!config.countStatus(status)) return 'status';
  if (!isHtmlResponse(status, res.getHeader('content-type'))) return 'not_html';
  if (config.skip && config.skip(req, res)) return 'skip_option';
  return null;
}
