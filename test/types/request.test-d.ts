/**
 * `req.track` and `req.analytics` as a user's compiler sees them: declared on Node's
 * `IncomingMessage`, and so on Express's and Connect's requests, which extend it.
 *
 * Type-checked only (`npm run test:types`), never run.
 */
import type { IncomingMessage } from 'node:http';
import type * as connect from 'connect';
import type { Request, RequestHandler } from 'express';
import { expectTypeOf } from 'expect-type';
import {
  analytics,
  type DeviceInfo,
  type RequestAnalytics,
  type TrackFunction,
} from 'zenovay-express';

declare const req: Request;
declare const incoming: IncomingMessage;
declare const connectReq: connect.IncomingMessage;

// `track` and `analytics` exist on every kind of request.
expectTypeOf(req).toHaveProperty('track');
expectTypeOf(req).toHaveProperty('analytics');
expectTypeOf(req.track).toEqualTypeOf<TrackFunction>();
expectTypeOf(incoming.track).toEqualTypeOf<TrackFunction>();
expectTypeOf(connectReq.track).toEqualTypeOf<TrackFunction>();
expectTypeOf(req.analytics).toEqualTypeOf<RequestAnalytics>();
expectTypeOf(incoming.analytics).toEqualTypeOf<RequestAnalytics>();

// The call a handler makes, and what it resolves to.
expectTypeOf(req.track('x', { a: 1 })).toEqualTypeOf<Promise<boolean>>();
expectTypeOf(incoming.track('signup')).toEqualTypeOf<Promise<boolean>>();
expectTypeOf(
  req.track('x', { plan: 'pro', seats: 3, trial: false }, { url: '/pricing' }),
).resolves.toBeBoolean();
expectTypeOf(req.track).toBeCallableWith('purchase', { value: 9.99 }, { referrer: '/cart' });
expectTypeOf(req.track).parameter(0).toBeString();

// Wrong arguments do not compile.
// @ts-expect-error -- the event name is a string, not a number
void req.track(42);
// @ts-expect-error -- the name is required
void req.track();
// @ts-expect-error -- the options know `url` and `referrer`, nothing else
void req.track('x', { a: 1 }, { uri: '/typo' });
// @ts-expect-error -- the page URL is a string
void incoming.track('x', undefined, { url: 1 });

// What a handler reads of the visitor.
expectTypeOf(req.analytics.device.browser.name).toEqualTypeOf<string | undefined>();
expectTypeOf(req.analytics.device.os.version).toEqualTypeOf<string | undefined>();
expectTypeOf(req.analytics.device.device.type).toEqualTypeOf<string | undefined>();
expectTypeOf(req.analytics.device).toEqualTypeOf<DeviceInfo>();
expectTypeOf(req.analytics.ip).toEqualTypeOf<string | undefined>();
expectTypeOf(req.analytics.userAgent).toEqualTypeOf<string | undefined>();
expectTypeOf(req.analytics.url).toEqualTypeOf<string | undefined>();
expectTypeOf(req.analytics.referrer).toEqualTypeOf<string | undefined>();
expectTypeOf(req.analytics.isBot).toEqualTypeOf<boolean>();
// @ts-expect-error -- the context is read-only
req.analytics.isBot = false;

// The middleware is accepted where Express and Connect take a handler.
expectTypeOf(analytics({ trackingCode: 'x' })).toExtend<RequestHandler>();
expectTypeOf(analytics({ trackingCode: 'x' })).toExtend<connect.NextHandleFunction>();
