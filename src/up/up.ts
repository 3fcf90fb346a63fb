/**
 * `wirewatch up`: the whole service on one host, on loopback — an embedded Azurite blob store,
 * the server, a default subscription with its resource group, network watcher and storage
 * account, and a local agent for this host. A second start on the same data dir resumes.
 *
 * DATA_DIR (mode 0700):
 *   up.json    the ids to resume with: subscription, Azurite's port, the VM name
 *   server/    the server's data dir (wirewatch.db, admin.token)
 *   azurite/   Azurite's blobs and metadata
 *   agent/     the local agent's agent.json and journal
 *   captures/  the local agent's capture root (local files of captures)
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyServerOptions } from 'fastify';
import { createAgent, type Agent } from '../agent/agent.js';
import { silentLog, type AgentLog } from '../agent/agent-log.js';
import { readIdentity } from '../agent/enroll.js';
import { startAzurite, type Azurite } from '../blob/azurite.js';
import { defaultRouteInterface } from '../capture/default-route.js';
import { checkInterfaceExists } from '../capture/interface-addresses.js';
import { readIfExists } from '../files/durable-file.js';
import { WirewatchError } from '../model/errors.js';
import {
  isLoopback,
  parseListen,
  startServer,
  type RunningServer,
} from '../server/start-server.js';
import {
  apiClient,
  createEnrollmentToken,
  ensureStorageAccount,
  ensureSubscription,
  ensureWatcher,
  UP_LOCATION,
  UP_NETWORK_WATCHER,
  UP_RESOURCE_GROUP,
  UP_STORAGE_ACCOUNT,
} from './bootstrap.js';

export interface UpOptions {
  readonly dataDir: string;
  /** `HOST:PORT` on a loopback address. */
  readonly listen: string;
  /** The interface the local agent captures on (default: the default route's). */
  readonly interface?: string;
  /** Messages of `up` itself and of the local agent. */
  readonly log?: AgentLog;
  /** The server's logger (default: none). */
  readonly serverLogger?: FastifyServerOptions['logger'];
  /** The admin token to install at the first start (WIREWATCH_ADMIN_TOKEN). */
  readonly adminToken?: string;
  /** How long to wait for the local agent's channel before going on without it (default 15 s). */
  readonly connectTimeoutMs?: number;
  /** Aborts the start (Ctrl-C while starting): what was started is stopped, and it rejects. */
  readonly signal?: AbortSignal;
}

export interface Up {
  /** The server's base URL. */
  readonly url: string;
  readonly adminToken: string;
  /** Where the admin token lives (`DATA_DIR/server/admin.token`). */
  readonly adminTokenPath: string;
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly networkWatcher: string;
  readonly storageAccount: string;
  /** The storage account's ARM id, for `storageLocation.storageId`. */
  readonly storageAccountId: string;
  readonly location: string;
  /** The local agent's VM name and its ARM id, for a capture's `target`. */
  readonly vmName: string;
  readonly vmId: string;
  readonly interface: string;
  /** Absolute. */
  readonly dataDir: string;
  /** The local agent's capture root: every local capture file lies under it. */
  readonly captureRoot: string;
  readonly blobEndpoint: string;
  /** True when up.json was there: the ids of an earlier run were reused. */
  readonly resumed: boolean;
  readonly agentConnected: boolean;
  /**
   * Stops the agent (every running capture is finalized), then the server, then Azurite; each
   * step runs even if an earlier one failed. Safe to call twice.
   */
  stop(): Promise<void>;
}

/** What up.json keeps between runs. */
interface UpState {
  readonly version: 1;
  readonly subscriptionId: string;
  /** Kept so that blob URLs stored with captures stay valid across runs. */
  readonly azuritePort: number;
  /** Kept so that the VM stays the same one even if the hostname changes. */
  readonly vmName: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A host name as a VM name (`^[A-Za-z0-9][-A-Za-z0-9._]*$`, up to 64, and ARM's rule that a
 * name ends with a letter, digit or `_`): other characters become `-`; `localhost` if nothing
 * is left.
 */
export function vmNameFromHostname(hostname: string): string {
  const name = hostname
    .replace(/[^-A-Za-z0-9._]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 64)
    .replace(/[-.]+$/, '');
  return name === '' ? 'localhost' : name;
}

/**
 * Starts everything in order — Azurite, the server, the bootstrap (idempotent), the agent —
 * and resolves once the agent is connected (or after connectTimeoutMs). On a failure, whatever
 * was started is stopped again before the error is thrown.
 */
export async function startUp(options: UpOptions): Promise<Up> {
  const log = options.log ?? silentLog;
  const { host } = parseListen(options.listen);
  if (!isLoopback(host)) {
    throw new WirewatchError(
      'InvalidRequestContent',
      `--listen ${options.listen}: wirewatch up listens on loopback only (127.0.0.1 or [::1]); run wirewatch server for other addresses`,
      { target: 'listen' },
    );
  }
  const dataDir = path.resolve(options.dataDir);
  const dirs = {
    server: path.join(dataDir, 'server'),
    azurite: path.join(dataDir, 'azurite'),
    agent: path.join(dataDir, 'agent'),
    captures: path.join(dataDir, 'captures'),
  };
  const iface = options.interface ?? (await defaultRouteInterface());
  await checkInterfaceExists(iface);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await mkdir(dirs.captures, { recursive: true, mode: 0o700 });

  const statePath = path.join(dataDir, 'up.json');
  const saved = await readState(statePath);
  const stops: { name: string; stop: () => Promise<void> }[] = [];
  const stopAll = async (): Promise<void> => {
    const errors: unknown[] = [];
    // Reverse start order: the agent finalizes its captures while server and blobs are there.
    for (const { name, stop } of [...stops].reverse()) {
      try {
        await stop();
      } catch (err) {
        log('error', `stopping ${name} failed`, { error: err });
        errors.push(err);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'stopping wirewatch up failed');
  };

  try {
    let azurite: Azurite;
    try {
      azurite = await startAzurite({
        dataDir: dirs.azurite,
        host: '127.0.0.1',
        ...(saved === undefined ? {} : { port: saved.azuritePort }),
      });
    } catch (err) {
      const hint =
        saved === undefined
          ? ''
          : ` (port ${saved.azuritePort} is kept in ${statePath}; is another wirewatch up running on this data dir?)`;
      throw new Error(
        `cannot start Azurite${hint}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    stops.push({ name: 'Azurite', stop: () => azurite.close() });
    log('info', 'Azurite listening', { blobEndpoint: azurite.blobEndpoint });
    options.signal?.throwIfAborted();

    const server: RunningServer = await startServer({
      dataDir: dirs.server,
      listen: options.listen,
      logger: options.serverLogger ?? false,
      ...(options.adminToken === undefined ? {} : { adminToken: options.adminToken }),
    });
    stops.push({ name: 'the server', stop: () => server.close() });
    log('info', 'server listening', { url: server.url });
    options.signal?.throwIfAborted();
    const adminToken =
      options.adminToken?.trim() || (await readFile(server.adminTokenPath, 'utf8')).trim();

    const api = apiClient(server.url, adminToken);
    const subscriptionId = await ensureSubscription(api, saved?.subscriptionId, log);
    const vmName = saved?.vmName ?? vmNameFromHostname(os.hostname());
    const state: UpState = {
      version: 1,
      subscriptionId,
      azuritePort: azurite.port,
      vmName,
    };
    if (JSON.stringify(state) !== JSON.stringify(saved)) await writeState(statePath, state);
    await ensureWatcher(api, subscriptionId);
    const storageAccountId = await ensureStorageAccount(
      api,
      subscriptionId,
      azurite.connectionString,
      azurite.blobEndpoint,
    );

    // The agent needs an enrollment token only for its first start (or after its VM was
    // deleted, which removes agent.json); later starts reuse agent.json.
    const identity = await readIdentity(dirs.agent);
    if (identity !== undefined && identity.subscriptionId.toLowerCase() !== subscriptionId) {
      throw new Error(
        `${path.join(dirs.agent, 'agent.json')} belongs to subscription ${identity.subscriptionId}, not ${subscriptionId} (was ${dirs.server} replaced?); remove ${dirs.agent} to enroll this host again`,
      );
    }
    options.signal?.throwIfAborted();
    const enrollToken =
      identity === undefined ? await createEnrollmentToken(api, subscriptionId, vmName) : undefined;
    const agent: Agent = await createAgent({
      serverUrl: server.url,
      ...(enrollToken === undefined ? {} : { enrollToken }),
      subscriptionId,
      resourceGroup: UP_RESOURCE_GROUP,
      name: vmName,
      location: UP_LOCATION,
      interface: iface,
      dataDir: dirs.agent,
      captureRoot: dirs.captures,
      log,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    let stopping = false;
    stops.push({
      name: 'the agent',
      // Azurite runs in its own process group, so a terminal's Ctrl-C does not reach it and
      // it is still there for the agent's last uploads.
      stop: async () => {
        stopping = true;
        await agent.close();
      },
    });
    void agent.exited.then((exit) => {
      if (stopping || exit.reason === 'closed') return;
      log('error', 'the local agent stopped; restart wirewatch up to enroll this host again', {
        reason: exit.reason,
        ...(exit.reason === 'unauthorized' ? { error: exit.error } : {}),
      });
    });
    const agentConnected = await waitConnected(
      agent,
      options.connectTimeoutMs ?? 15_000,
      options.signal,
    );
    if (!agentConnected) log('warn', 'the local agent is not connected yet; it keeps trying');

    let stopped: Promise<void> | undefined;
    return {
      url: server.url,
      adminToken,
      adminTokenPath: server.adminTokenPath,
      subscriptionId,
      resourceGroup: UP_RESOURCE_GROUP,
      networkWatcher: UP_NETWORK_WATCHER,
      storageAccount: UP_STORAGE_ACCOUNT,
      storageAccountId,
      location: UP_LOCATION,
      vmName,
      vmId: `/subscriptions/${subscriptionId}/resourceGroups/${UP_RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/${vmName}`,
      interface: iface,
      dataDir,
      captureRoot: dirs.captures,
      blobEndpoint: azurite.blobEndpoint,
      resumed: saved !== undefined,
      agentConnected,
      stop() {
        stopped ??= stopAll();
        return stopped;
      },
    };
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}

async function readState(file: string): Promise<UpState | undefined> {
  const text = await readIfExists(file, 'utf8');
  if (text === undefined) return undefined;
  let value: Partial<Record<keyof UpState, unknown>> | undefined;
  try {
    value = JSON.parse(text) as typeof value;
  } catch {
    value = undefined;
  }
  if (
    value?.version !== 1 ||
    typeof value.subscriptionId !== 'string' ||
    !UUID.test(value.subscriptionId) ||
    typeof value.azuritePort !== 'number' ||
    !Number.isInteger(value.azuritePort) ||
    value.azuritePort < 1 ||
    value.azuritePort > 65535 ||
    typeof value.vmName !== 'string' ||
    vmNameFromHostname(value.vmName) !== value.vmName
  ) {
    throw new Error(`${file} is damaged; fix or remove it (a new one starts from scratch)`);
  }
  return {
    version: 1,
    subscriptionId: value.subscriptionId,
    azuritePort: value.azuritePort,
    vmName: value.vmName,
  };
}

async function writeState(file: string, state: UpState): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, file);
}

function waitConnected(agent: Agent, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  if (agent.connected || signal?.aborted) return Promise.resolve(agent.connected);
  return new Promise((resolve) => {
    const done = (connected: boolean) => {
      clearTimeout(timer);
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
      resolve(connected);
    };
    const onAbort = () => done(agent.connected);
    const timer = setTimeout(onAbort, timeoutMs);
    const unsubscribe = agent.onEvent((event) => {
      if (event.type === 'connected') done(true);
      else if (event.type === 'exit') done(false);
    });
    signal?.addEventListener('abort', onAbort);
  });
}
