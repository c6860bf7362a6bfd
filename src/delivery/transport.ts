/**
 * The seam between the delivery engine and the network: one request in, one answer out.
 */

/** One request to the tracking endpoint. */
export interface TransportRequest {
  /** `{host}/e/{trackingCode}` */
  url: string;
  /** Lower-case header names: `content-type`, `user-agent`, `x-forwarded-for`, client hints. */
  headers: Readonly<Record<string, string>>;
  /** The JSON body, serialised once. */
  body: string;
}

/** The endpoint's answer. */
export interface TransportResponse {
  status: number;
  /** The `Retry-After` header, when the endpoint sent one. */
  retryAfter?: string | undefined;
  /** The start of the response body (for error messages). */
  body?: string | undefined;
}

/**
 * Sends requests. `send` rejects on network errors and when `signal` aborts (timeout or
 * shutdown); it resolves with the status of any answer. `close` releases sockets.
 */
export interface Transport {
  send(request: TransportRequest, signal: AbortSignal): Promise<TransportResponse>;
  close?(): void | Promise<void>;
}

/**
 * A transport that keeps each request's deadline itself and ends everything in flight on
 * `close()` (the built-in client): the engine then needs no AbortController per attempt.
 */
export interface DeadlineTransport extends Transport {
  sendWithin(request: TransportRequest, timeoutMs: number): Promise<TransportResponse>;
}
