/** zenovay-express: server-side Zenovay analytics for Express and Connect. */
export { analytics } from './middleware.js';
export type { AnalyticsMiddleware, TrackFunction, TrackOptions } from './middleware.js';
export { createTracker } from './tracker.js';
export { closeOnShutdown } from './shutdown.js';
export type { CloseOnShutdownOptions } from './shutdown.js';
export type { TrackerEvents, TrackerEventName, TrackerListener } from './delivery/events.js';
export type { RequestAnalytics } from './request/context.js';
export type { DeviceInfo } from './request/device.js';
export type { CloseOptions, EventData, Tracker, Visitor, WireEvent } from './tracker.js';
export type { AnalyticsOptions, PathPattern, TrackerOptions } from './options.js';
export type { TrackerStats, FailReason, DropReason } from './delivery/delivery.js';
export type { ConcurrencyStats } from './delivery/adaptive-limit.js';
export type { Transport, TransportRequest, TransportResponse } from './delivery/transport.js';
export type { Logger } from './logger.js';
export type { ClientHints } from './request/forwarded-headers.js';
export type { TrustFunction, TrustProxy } from './request/trust.js';
