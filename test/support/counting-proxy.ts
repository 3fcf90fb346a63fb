/**
 * An HTTP proxy in front of a real blob service (Azurite) that counts the requests going through
 * it by method, so that a test can say how many times the server asked storage something. It can
 * also fail HEAD requests (503), the fault of a storage service that errors. Register a storage
 * account with `connectionString(azurite)` and everything for that account goes through it.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME } from '../../src/blob/azurite.js';

export interface CountingProxy {
  /** `http://127.0.0.1:PORT/devstoreaccount1`: the blob endpoint through the proxy. */
  readonly blobEndpoint: string;
  /** A connection string of the development account whose blob endpoint is the proxy. */
  readonly connectionString: string;
  /** Requests forwarded or failed so far, by method. */
  count(method: string): number;
  /** While true, HEAD requests are answered 503 without reaching storage. */
  failHeads: boolean;
  close(): Promise<void>;
}

export async function startCountingProxy(target: {
  readonly port: number;
}): Promise<CountingProxy> {
  const counts = new Map<string, number>();
  const state = { failHeads: false };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? 'GET';
    counts.set(method, (counts.get(method) ?? 0) + 1);
    if (state.failHeads && method === 'HEAD') {
      res.writeHead(503, { 'x-ms-error-code': 'ServerBusy' }).end();
      return;
    }
    const upstream = request(
      { host: '127.0.0.1', port: target.port, method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const blobEndpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT_NAME}`;
  let closed: Promise<void> | undefined;
  return {
    blobEndpoint,
    connectionString:
      `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT_NAME};` +
      `AccountKey=${AZURITE_ACCOUNT_KEY};BlobEndpoint=${blobEndpoint};`,
    count: (method) => counts.get(method) ?? 0,
    get failHeads() {
      return state.failHeads;
    },
    set failHeads(value: boolean) {
      state.failHeads = value;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
      return closed;
    },
  };
}
