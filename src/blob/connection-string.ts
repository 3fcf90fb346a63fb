import { WirewatchError } from '../model/errors.js';

/**
 * An Azure Storage account as a connection string names it. `accountKey` is a secret: it stays
 * on the server (it signs the SAS the server mints) and never reaches agents, logs or API
 * responses.
 */
export interface BlobAccount {
  readonly accountName: string;
  /** The account key, base64, as given. */
  readonly accountKey: string;
  /** The blob service endpoint without a trailing slash, e.g. `https://acct.blob.core.windows.net`. */
  readonly blobEndpoint: string;
  readonly protocol: 'http' | 'https';
}

/** Azurite's well-known development account (public: it is in Azure's and Azurite's docs). */
export const DEVELOPMENT_ACCOUNT: BlobAccount = {
  accountName: 'devstoreaccount1',
  accountKey:
    'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
  blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
  protocol: 'http',
};

const KNOWN_KEYS = new Set([
  'defaultendpointsprotocol',
  'accountname',
  'accountkey',
  'blobendpoint',
  'endpointsuffix',
  'usedevelopmentstorage',
  'developmentstorageproxyuri',
  // Other services' endpoints and secondaries may be in a string copied from the portal.
  'queueendpoint',
  'tableendpoint',
  'fileendpoint',
  'blobsecondaryendpoint',
  'queuesecondaryendpoint',
  'tablesecondaryendpoint',
  'filesecondaryendpoint',
]);

/** Azure's storage account name rule, relaxed to 1–63 for emulators' custom accounts. */
const ACCOUNT_NAME = /^[a-z0-9]{1,63}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** A DNS suffix such as `core.windows.net`. */
const ENDPOINT_SUFFIX =
  /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

function bad(message: string): WirewatchError {
  return new WirewatchError('InvalidConnectionString', `connectionString: ${message}`, {
    target: 'connectionString',
  });
}

/**
 * Parses an Azure Storage connection string (`Key=Value;…`, keys case-insensitive):
 * `AccountName` and `AccountKey` are required; the blob endpoint is `BlobEndpoint` when given,
 * else `{DefaultEndpointsProtocol}://{AccountName}.blob.{EndpointSuffix}` (suffix
 * `core.windows.net` by default). `UseDevelopmentStorage=true` is Azurite's development account
 * on 127.0.0.1:10000. Messages name the part that is missing or malformed and never quote a
 * value (the string holds the key).
 */
export function parseConnectionString(text: string): BlobAccount {
  if (typeof text !== 'string' || text.trim() === '') throw bad('is empty');
  const parts = new Map<string, string>();
  for (const raw of text.split(';')) {
    const segment = raw.trim();
    if (segment === '') continue;
    const eq = segment.indexOf('=');
    if (eq <= 0) {
      throw bad(
        `every part must be Key=Value separated by ';' (part ${parts.size + 1} has no key)`,
      );
    }
    const key = segment.slice(0, eq).trim();
    const folded = key.toLowerCase();
    if (folded === 'sharedaccesssignature') {
      throw bad(
        'SharedAccessSignature connection strings are not accepted: the server needs AccountKey to sign each session’s SAS',
      );
    }
    if (!KNOWN_KEYS.has(folded)) {
      // The name only, and only when it looks like a name (never a value pasted by mistake).
      const shown = /^[A-Za-z]{1,40}$/.test(key) ? `'${key}'` : `number ${parts.size + 1}`;
      throw bad(
        `unknown part ${shown}; expected DefaultEndpointsProtocol, AccountName, AccountKey, BlobEndpoint, EndpointSuffix or UseDevelopmentStorage`,
      );
    }
    if (parts.has(folded)) throw bad(`${key} is given twice`);
    parts.set(folded, segment.slice(eq + 1).trim());
  }
  if (parts.size === 0) throw bad('is empty');

  const dev = parts.get('usedevelopmentstorage');
  if (dev !== undefined) {
    if (dev.toLowerCase() !== 'true') throw bad('UseDevelopmentStorage must be true when given');
    if (parts.size > 1 && !(parts.size === 2 && parts.has('developmentstorageproxyuri'))) {
      throw bad('UseDevelopmentStorage=true cannot be combined with account parts');
    }
    if (parts.has('developmentstorageproxyuri')) {
      throw bad('DevelopmentStorageProxyUri is not supported');
    }
    return DEVELOPMENT_ACCOUNT;
  }

  const accountName = parts.get('accountname');
  if (!accountName) throw bad('AccountName is missing');
  if (!ACCOUNT_NAME.test(accountName)) {
    throw bad('AccountName must be lower-case letters and digits (Azure: 3 to 24 of them)');
  }
  const accountKey = parts.get('accountkey');
  if (!accountKey) {
    throw bad('AccountKey is missing (the server signs each session’s SAS with the account key)');
  }
  if (!BASE64.test(accountKey) || accountKey.length % 4 !== 0) {
    throw bad('AccountKey is not base64');
  }

  const endpoint = parts.get('blobendpoint');
  if (endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw bad('BlobEndpoint is not a URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw bad('BlobEndpoint must be an http:// or https:// URL');
    }
    if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
      throw bad('BlobEndpoint must not carry credentials, a query or a fragment');
    }
    return {
      accountName,
      accountKey,
      blobEndpoint: `${url.origin}${url.pathname}`.replace(/\/+$/, ''),
      protocol: url.protocol === 'http:' ? 'http' : 'https',
    };
  }

  const protocolText = parts.get('defaultendpointsprotocol');
  if (protocolText === undefined) {
    throw bad('DefaultEndpointsProtocol is missing (needed when BlobEndpoint is not given)');
  }
  const protocol = protocolText.toLowerCase();
  if (protocol !== 'http' && protocol !== 'https') {
    throw bad('DefaultEndpointsProtocol must be http or https');
  }
  const suffix = parts.get('endpointsuffix') ?? 'core.windows.net';
  if (!ENDPOINT_SUFFIX.test(suffix)) throw bad('EndpointSuffix is not a DNS name');
  return {
    accountName,
    accountKey,
    blobEndpoint: `${protocol}://${accountName}.blob.${suffix}`,
    protocol,
  };
}
