/**
 * The bootstrap of `wirewatch up`: the default subscription, resource group, network watcher
 * and storage account, and the local agent's enrollment token — made through the server's
 * public API, as any client would, and idempotent, so that a second start resumes.
 */
import type { AgentLog } from '../agent/agent-log.js';

/**
 * The one location of `wirewatch up`: Azure's locations are regions, and a single host is a
 * region of its own. The network watcher and the local VM are both there.
 */
export const UP_LOCATION = 'local';
export const UP_SUBSCRIPTION_NAME = 'default';
export const UP_RESOURCE_GROUP = 'default';
export const UP_NETWORK_WATCHER = 'local';
export const UP_STORAGE_ACCOUNT = 'local';
/** The api-version the bootstrap speaks (and the examples print). */
export const UP_API_VERSION = '2025-05-01';

export interface ApiAnswer {
  readonly status: number;
  readonly body: unknown;
}

export type ApiCall = (method: string, pathAndQuery: string, body?: unknown) => Promise<ApiAnswer>;

/** The bootstrap goes through the server's public API, as any client would. */
export function apiClient(url: string, token: string): ApiCall {
  return async (method, pathAndQuery, body) => {
    const res = await fetch(`${url}${pathAndQuery}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed };
  };
}

function failed(what: string, answer: ApiAnswer): Error {
  const error = (answer.body as { error?: { code?: unknown; message?: unknown } } | undefined)
    ?.error;
  const detail =
    typeof error?.code === 'string'
      ? `${error.code}: ${typeof error.message === 'string' ? error.message : ''}`
      : JSON.stringify(answer.body)?.slice(0, 200);
  return new Error(`${what}: HTTP ${answer.status} ${detail ?? ''}`.trim());
}

/**
 * The subscription of up.json if the server still has it, else the first one named `default`
 * (up.json was removed), else a new one.
 */
export async function ensureSubscription(
  api: ApiCall,
  savedId: string | undefined,
  log: AgentLog,
): Promise<string> {
  const list = await api('GET', '/api/v1/subscriptions');
  if (list.status !== 200) throw failed('listing subscriptions', list);
  const subs = (list.body as { value: { subscriptionId: string; displayName: string }[] }).value;
  const byId = subs.find((s) => s.subscriptionId.toLowerCase() === savedId?.toLowerCase());
  if (byId !== undefined) return byId.subscriptionId.toLowerCase();
  if (savedId !== undefined) {
    log('warn', 'the subscription in up.json is not on the server; using another', {
      subscriptionId: savedId,
    });
  }
  const byName = subs.find((s) => s.displayName === UP_SUBSCRIPTION_NAME);
  if (byName !== undefined) return byName.subscriptionId.toLowerCase();
  const created = await api('POST', '/api/v1/subscriptions', {
    displayName: UP_SUBSCRIPTION_NAME,
  });
  if (created.status !== 201) throw failed('creating the default subscription', created);
  return (created.body as { subscriptionId: string }).subscriptionId.toLowerCase();
}

/**
 * Network watcher `local` in resource group `default`. Created before the agent enrolls: the
 * first VM of a location would otherwise get Azure's automatic NetworkWatcher_local.
 */
export async function ensureWatcher(api: ApiCall, subscriptionId: string): Promise<void> {
  const at =
    `/subscriptions/${subscriptionId}/resourceGroups/${UP_RESOURCE_GROUP}` +
    `/providers/Microsoft.Network/networkWatchers/${UP_NETWORK_WATCHER}?api-version=${UP_API_VERSION}`;
  await ensureResource({
    what: `creating network watcher ${UP_NETWORK_WATCHER}`,
    find: async () => ((await api('GET', at)).status === 200 ? true : undefined),
    upsert: () => api('PUT', at, { location: UP_LOCATION }),
    made: () => true,
  });
}

/** Storage account `local` on the embedded Azurite; registered again if its endpoint moved. */
export async function ensureStorageAccount(
  api: ApiCall,
  subscriptionId: string,
  connectionString: string,
  blobEndpoint: string,
): Promise<string> {
  const native = `/api/v1/subscriptions/${subscriptionId}/storageAccounts`;
  return ensureResource({
    what: `registering storage account ${UP_STORAGE_ACCOUNT}`,
    find: async () => {
      const list = await api('GET', native);
      if (list.status !== 200) throw failed('listing storage accounts', list);
      const accounts = (
        list.body as {
          value: { id: string; name: string; resourceGroup: string; blobEndpoint: string }[];
        }
      ).value;
      return accounts.find(
        (a) =>
          a.name === UP_STORAGE_ACCOUNT &&
          a.resourceGroup.toLowerCase() === UP_RESOURCE_GROUP &&
          a.blobEndpoint === blobEndpoint,
      )?.id;
    },
    upsert: () =>
      api('POST', native, {
        name: UP_STORAGE_ACCOUNT,
        resourceGroup: UP_RESOURCE_GROUP,
        connectionString,
      }),
    made: (body) => (body as { id: string }).id,
  });
}

/**
 * The bootstrap's one create-or-keep, over the server's upserts (network watcher PUT, storage
 * account POST: 201 created, 200 updated): a resource `find` finds is kept as it is (its etag,
 * tags and createdAt untouched, nothing audited); else the upsert makes it.
 */
async function ensureResource<T>(steps: {
  readonly what: string;
  find(): Promise<T | undefined>;
  upsert(): Promise<ApiAnswer>;
  made(body: unknown): T;
}): Promise<T> {
  const found = await steps.find();
  if (found !== undefined) return found;
  const answer = await steps.upsert();
  if (answer.status !== 200 && answer.status !== 201) throw failed(steps.what, answer);
  return steps.made(answer.body);
}

/**
 * A takeover token for this host's VM: `up` is this host's admin, and when agent.json is gone
 * (a removed agent dir) the VM may still be enrolled, which an ordinary token cannot replace.
 * It enrolls only that VM, once; the server audits the takeover.
 */
export async function createEnrollmentToken(
  api: ApiCall,
  subscriptionId: string,
  vmName: string,
): Promise<string> {
  const answer = await api('POST', `/api/v1/subscriptions/${subscriptionId}/enrollmentTokens`, {
    expiresInHours: 1,
    takeover: { resourceGroup: UP_RESOURCE_GROUP, name: vmName },
  });
  if (answer.status !== 201) throw failed('creating an enrollment token', answer);
  return (answer.body as { token: string }).token;
}
