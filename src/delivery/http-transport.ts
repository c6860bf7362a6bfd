/**
 * The only file that speaks HTTP: Node's `http`/`https` with keep-alive connections.
 */
import http from 'node:http';
import https from 'node:https';
import type { Transport, TransportRequest, TransportResponse } from './transport.js';

const MAX_BODY_SNIPPET = 512;

export interface HttpTransportOptions {
  /** Sockets per origin: the engine never has more requests in flight than this. */
  maxSockets: number;
}

export function createHttpTransport(options: HttpTransportOptions): Transport {
  const agentOptions = {
    keepAlive: true,
    maxSockets: options.maxSockets,
    scheduling: 'lifo' as const,
  };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);

  return {
    send(request: TransportRequest, signal: AbortSignal): Promise<TransportResponse> {
      return new Promise<TransportResponse>((resolve, reject) => {
        const secure = request.url.startsWith('https:');
        const client = secure ? https : http;
        const req = client.request(request.url, {
          method: 'POST',
          agent: secure ? httpsAgent : httpAgent,
          headers: { ...request.headers, 'content-length': Buffer.byteLength(request.body) },
          signal,
        });
        req.once('error', reject);
        req.once('response', (res) => {
          let snippet = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (snippet.length < MAX_BODY_SNIPPET) snippet += chunk.slice(0, MAX_BODY_SNIPPET);
          });
          res.once('error', reject);
          res.once('end', () => {
            const retryAfter = res.headers['retry-after'];
            resolve({
              status: res.statusCode ?? 0,
              retryAfter,
              body: snippet.slice(0, MAX_BODY_SNIPPET),
            });
          });
        });
        req.end(request.body);
      });
    },
    close(): void {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
