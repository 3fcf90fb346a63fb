/**
 * The server's side of a registered storage account: it holds the account key (from the
 * connection string), makes sure the capture container exists, mints per-session SAS tokens and
 * reads blobs back for downloads. Server-side only: agents never see this client or the key,
 * only a SAS from mintWriteSas.
 */
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import {
  BlobSASPermissions,
  BlobServiceClient,
  generateBlobSASQueryParameters,
  newPipeline,
  RestError,
  SASProtocol,
  StorageSharedKeyCredential,
  type ContainerClient,
} from '@azure/storage-blob';
import { WirewatchError } from '../model/errors.js';
import { CAPTURE_CONTAINER } from './blob-names.js';
import { parseConnectionString, type BlobAccount } from './connection-string.js';

export interface StorageAccountClientOptions {
  /** Attempts per request (network errors, 5xx, 408, 429 are retried); default 3. */
  readonly maxTries?: number;
  /** Limit on ensureContainer and blobSize, retries included; default 15 s. */
  readonly timeoutMs?: number;
}

export interface BlobDownload {
  /** The bytes asked for. */
  readonly stream: NodeJS.ReadableStream;
  /** The whole blob's length. */
  readonly size: number;
  /** The length of `stream`. */
  readonly contentLength: number;
}

/** A SAS's start lies this far in the past, so clocks a little behind the server's accept it. */
const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * The blob name inside CAPTURE_CONTAINER of a blob URL of the account at `blobEndpoint`
 * (query and fragment ignored, path segments decoded); undefined when the URL is not one, or
 * when a decoded segment is empty, `.` or `..` or holds a `/` or `\` (`%2e%2e`, `..%2F`): the
 * storage client would resolve such a name to another blob, or another container.
 */
export function blobNameOfUrl(blobEndpoint: string, url: string): string | undefined {
  let target: URL;
  let base: URL;
  try {
    target = new URL(url);
    base = new URL(blobEndpoint);
  } catch {
    return undefined;
  }
  if (target.origin !== base.origin) return undefined;
  const prefix = `${base.pathname.replace(/\/+$/, '')}/${CAPTURE_CONTAINER}/`;
  if (!target.pathname.startsWith(prefix)) return undefined;
  const rest = target.pathname.slice(prefix.length);
  if (rest === '') return undefined;
  let segments: string[];
  try {
    segments = rest.split('/').map(decodeURIComponent);
  } catch {
    return undefined;
  }
  return segments.every(isPlainSegment) ? segments.join('/') : undefined;
}

/** A blob name segment that no URL resolution can turn into a step elsewhere. */
function isPlainSegment(segment: string): boolean {
  return (
    segment !== '' &&
    segment !== '.' &&
    segment !== '..' &&
    !segment.includes('/') &&
    !segment.includes('\\') &&
    !segment.includes('\0')
  );
}

export class StorageAccountClient {
  readonly accountName: string;
  /** Without a trailing slash, e.g. `http://127.0.0.1:10000/devstoreaccount1`. */
  readonly blobEndpoint: string;
  // Private fields: the key is out of reach of JSON.stringify, util.inspect and loggers.
  readonly #credential: StorageSharedKeyCredential;
  readonly #container: ContainerClient;
  readonly #timeoutMs: number;

  /** Throws InvalidConnectionString (naming the bad part, never the key) for a bad string. */
  constructor(connectionString: string, options: StorageAccountClientOptions = {}) {
    const account: BlobAccount = parseConnectionString(connectionString);
    this.accountName = account.accountName;
    this.blobEndpoint = account.blobEndpoint;
    this.#credential = new StorageSharedKeyCredential(account.accountName, account.accountKey);
    const pipeline = newPipeline(this.#credential, {
      retryOptions: {
        maxTries: options.maxTries ?? 3,
        retryDelayInMs: 200,
        maxRetryDelayInMs: 2000,
      },
    });
    this.#container = new BlobServiceClient(account.blobEndpoint, pipeline).getContainerClient(
      CAPTURE_CONTAINER,
    );
    this.#timeoutMs = options.timeoutMs ?? 15_000;
  }

  /**
   * Creates CAPTURE_CONTAINER (private: no anonymous access) unless it exists. This is also the
   * check that the endpoint is a blob service and accepts the key: StorageAccountUnreachable
   * when it cannot be reached or answers something else, StorageAccountAccessDenied when it
   * refuses the key.
   */
  async ensureContainer(): Promise<void> {
    try {
      await this.#container.createIfNotExists({
        abortSignal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (err) {
      throw this.#failure(err, `create the container '${CAPTURE_CONTAINER}'`);
    }
  }

  /** The URL of a blob in CAPTURE_CONTAINER, without any query. */
  blobUrl(blobName: string): string {
    return this.#container.getBlockBlobClient(checkBlobName(blobName)).url;
  }

  /** The blob name of one of this account's capture blob URLs (see blobNameOfUrl). */
  blobNameOfUrl(url: string): string | undefined {
    return blobNameOfUrl(this.blobEndpoint, url);
  }

  /**
   * A service SAS for one blob of CAPTURE_CONTAINER (sr=b) that allows create and write only
   * (sp=cw): its holder can upload that blob (Put Blob, Put Block, Put Block List) and nothing
   * else — no read, list, delete, nor any other blob. Valid over https and http (Azurite), from
   * a few minutes ago until `expiresOn`. Returned as a query string without '?'.
   */
  mintWriteSas(blobName: string, expiresOn: Date): string {
    if (Number.isNaN(expiresOn.getTime())) {
      throw new RangeError('mintWriteSas: expiresOn is not a date');
    }
    return generateBlobSASQueryParameters(
      {
        containerName: CAPTURE_CONTAINER,
        blobName: checkBlobName(blobName),
        permissions: BlobSASPermissions.parse('cw'),
        protocol: SASProtocol.HttpsAndHttp,
        startsOn: new Date(Date.now() - CLOCK_SKEW_MS),
        expiresOn,
      },
      this.#credential,
    ).toString();
  }

  /** The committed blob's length; undefined when there is no such blob. */
  async blobSize(blobName: string): Promise<number | undefined> {
    const blob = this.#container.getBlockBlobClient(checkBlobName(blobName));
    try {
      const props = await blob.getProperties({ abortSignal: AbortSignal.timeout(this.#timeoutMs) });
      return props.contentLength ?? 0;
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) return undefined;
      throw this.#failure(err, `read the properties of blob '${blobName}'`);
    }
  }

  /**
   * Reads a blob, whole or from `range.offset` (for `range.count` bytes, or to the end).
   * ResourceNotFound when the blob does not exist; InvalidRequestContent (target `range`) when
   * the range starts beyond the end.
   */
  async download(
    blobName: string,
    range?: { readonly offset: number; readonly count?: number },
  ): Promise<BlobDownload> {
    const offset = range?.offset ?? 0;
    const count = range?.count;
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError('download: range.offset must be a whole number ≥ 0');
    }
    if (count !== undefined && (!Number.isSafeInteger(count) || count <= 0)) {
      throw new RangeError('download: range.count must be a whole number > 0');
    }
    const blob = this.#container.getBlockBlobClient(checkBlobName(blobName));
    let response;
    try {
      response = await blob.download(offset, count);
    } catch (err) {
      if (err instanceof RestError && err.statusCode === 404) {
        throw new WirewatchError(
          'ResourceNotFound',
          `Blob '${blobName}' was not found in storage account '${this.accountName}'`,
        );
      }
      if (err instanceof RestError && err.statusCode === 416) {
        // A range of an empty blob: Azure answers 416 where the caller wants nothing.
        if (offset === 0) return { stream: Readable.from([]), size: 0, contentLength: 0 };
        throw beyondEnd(offset, blobName);
      }
      throw this.#failure(err, `read blob '${blobName}'`);
    }
    const stream = response.readableStreamBody;
    if (!stream) throw new Error(`download of blob '${blobName}' returned no body`);
    const contentLength = response.contentLength ?? 0;
    const total = /\/(\d+)\s*$/.exec(response.contentRange ?? '')?.[1];
    const size = total === undefined ? contentLength : Number(total);
    if (offset > 0 && offset >= size) {
      // Azure answers 416 here; Azurite an empty 206. Both read as Azure does.
      (stream as Readable).destroy?.();
      throw beyondEnd(offset, blobName);
    }
    return { stream, size, contentLength };
  }

  /** What loggers and JSON see: never the key. */
  toJSON(): { accountName: string; blobEndpoint: string } {
    return { accountName: this.accountName, blobEndpoint: this.blobEndpoint };
  }

  toString(): string {
    return `StorageAccountClient ${JSON.stringify(this.toJSON())}`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  /** A failure talking to the account as a WirewatchError that names no secret. */
  #failure(err: unknown, doing: string): WirewatchError {
    const where = `the blob endpoint ${this.blobEndpoint} (account '${this.accountName}')`;
    if (err instanceof RestError && (err.statusCode === 401 || err.statusCode === 403)) {
      return new WirewatchError(
        'StorageAccountAccessDenied',
        `${where} refused the account key when asked to ${doing} (HTTP ${err.statusCode}${codeOf(err)}); check AccountName and AccountKey`,
        { target: 'connectionString' },
      );
    }
    const reason =
      err instanceof RestError && err.statusCode !== undefined
        ? `it answered HTTP ${err.statusCode}${codeOf(err)}, not as an Azure Blob service would`
        : isAbort(err)
          ? `no answer within ${this.#timeoutMs / 1000} s`
          : `${networkCode(err)}`;
    return new WirewatchError(
      'StorageAccountUnreachable',
      `Could not ${doing} at ${where}: ${reason}`,
      { target: 'connectionString' },
    );
  }
}

function beyondEnd(offset: number, blobName: string): WirewatchError {
  return new WirewatchError(
    'InvalidRequestContent',
    `range: offset ${offset} is at or beyond the end of blob '${blobName}'`,
    { target: 'range' },
  );
}

function checkBlobName(blobName: string): string {
  if (typeof blobName !== 'string' || !blobName.split('/').every(isPlainSegment)) {
    throw new RangeError(
      'a blob name must be a non-empty path without a leading /, empty, . or .. segments',
    );
  }
  return blobName;
}

/** The storage error code (e.g. AuthenticationFailed): a fixed word, never a value. */
function codeOf(err: RestError): string {
  const code = err.code ?? err.response?.headers.get('x-ms-error-code');
  return code && /^\w{1,64}$/.test(code) ? ` ${code}` : '';
}

function isAbort(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

function networkCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = [e?.code, e?.cause?.code].find(
    (c): c is string => typeof c === 'string' && /^[A-Z_]{2,40}$/.test(c),
  );
  return code ? `network error ${code}` : 'network error';
}
