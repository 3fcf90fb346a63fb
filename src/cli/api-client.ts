import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { RefusedError, unreachableOf, UsageError, type UnreachableError } from './cli-errors.js';
import type { Connection } from './profile.js';

/** The api-version the CLI speaks on ARM routes. */
export const CLI_API_VERSION = '2025-05-01';
/** The Microsoft.Compute api-version the CLI uses for VM routes. */
export const CLI_COMPUTE_API_VERSION = '2024-07-01';

export interface RequestOptions {
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  /** Query parameters; api-version is added for /subscriptions/ paths unless given. */
  readonly query?: Record<string, string | number | undefined>;
}

export interface JsonReply {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: unknown;
}

/**
 * The CLI's HTTP client: bearer token, the profile's CA, JSON in and out. A refusal (HTTP 4xx/5xx)
 * becomes a RefusedError with the server's code; no answer at all, or a TLS failure, an
 * UnreachableError.
 */
export class ApiClient {
  readonly connection: Connection;
  readonly #ca: Buffer | undefined;
  readonly #agent: HttpAgent | HttpsAgent;
  readonly #https: boolean;

  constructor(connection: Connection) {
    this.connection = connection;
    this.#https = connection.server.startsWith('https:');
    if (!this.#https && !connection.server.startsWith('http:')) {
      throw new UsageError(`server URL ${connection.server} must start with https:// or http://`);
    }
    if (connection.ca) {
      try {
        this.#ca = readFileSync(connection.ca);
      } catch (err) {
        throw new UsageError(`cannot read the CA file ${connection.ca}: ${(err as Error).message}`);
      }
    }
    this.#agent = this.#https
      ? new HttpsAgent({ keepAlive: true, ...(this.#ca ? { ca: this.#ca } : {}) })
      : new HttpAgent({ keepAlive: true });
  }

  /** The subscription to act in: --subscription, the environment, or the profile's. */
  get subscription(): string {
    const s = this.connection.subscription;
    if (!s) {
      throw new UsageError(
        'no subscription: pass --subscription ID (or log in with a subscription-scoped token)',
      );
    }
    return s;
  }

  url(path: string, query: RequestOptions['query'] = {}): URL {
    const url = new URL(`${this.connection.server}${path}`);
    const all = { ...query };
    if (path.startsWith('/subscriptions/') && all['api-version'] === undefined) {
      all['api-version'] = path.includes('/Microsoft.Compute/')
        ? CLI_COMPUTE_API_VERSION
        : CLI_API_VERSION;
    }
    for (const [k, v] of Object.entries(all))
      if (v !== undefined) url.searchParams.set(k, String(v));
    return url;
  }

  /** Sends a request and returns the raw response stream (for downloads and streams). */
  async open(method: string, url: URL, options: RequestOptions = {}): Promise<IncomingMessage> {
    const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.connection.token}`,
      ...(payload === undefined
        ? {}
        : {
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(payload)),
          }),
      ...options.headers,
    };
    return new Promise<IncomingMessage>((resolve, reject) => {
      const send = this.#https ? httpsRequest : httpRequest;
      const req = send(url, { method, headers, agent: this.#agent }, resolve);
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.#unreachable(err)));
      req.end(payload);
    });
  }

  /** A JSON request; throws RefusedError for an error answer. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<JsonReply> {
    const res = await this.open(method, this.url(path, options.query), options);
    const text = await readAll(res);
    const body = parseBody(text);
    const status = res.statusCode ?? 0;
    if (status >= 400) throw refusal(status, body, text);
    return { status, headers: res.headers, body };
  }

  async get<T>(path: string, query?: RequestOptions['query']): Promise<T> {
    return (await this.request('GET', path, query ? { query } : {})).body as T;
  }

  close(): void {
    this.#agent.destroy();
  }

  #unreachable(err: NodeJS.ErrnoException): UnreachableError {
    return unreachableOf(err, this.connection.server, this.connection.ca !== undefined);
  }
}

export function readAll(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('error', reject);
  });
}

/** An answer's body as JSON; undefined when it is empty or not JSON. */
export function parseBody(text: string): unknown {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

/** An error answer, read whole, as the refusal it says. */
export async function readRefusal(res: IncomingMessage): Promise<RefusedError> {
  const text = await readAll(res);
  return refusal(res.statusCode ?? 0, parseBody(text), text);
}

/** Azure's error body → RefusedError; anything else keeps the HTTP status as its code. */
export function refusal(status: number, body: unknown, text: string): RefusedError {
  const error = (body as { error?: { code?: unknown; message?: unknown; target?: unknown } })
    ?.error;
  if (error && typeof error.code === 'string') {
    return new RefusedError(
      status,
      error.code,
      typeof error.message === 'string' ? error.message : text,
      typeof error.target === 'string' ? error.target : undefined,
    );
  }
  return new RefusedError(status, `HTTP${status}`, text.slice(0, 500) || `HTTP ${status}`);
}
