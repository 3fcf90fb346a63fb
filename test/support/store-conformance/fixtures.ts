/** The records and helpers the store conformance suite builds its cases from. */
import { randomUUID } from 'node:crypto';
import { resolveCapture, type CaptureProperties } from '../../../src/model/capture-settings.js';
import type {
  AuditRecord,
  EnrollmentTokenRecord,
  CreateSessionResult,
  NetworkWatcherRecord,
  OperationRecord,
  Page,
  SessionRecord,
  SubscriptionRecord,
  TokenRecord,
  VmRecord,
} from '../../../src/store/store.js';

// Fixed times in the past, so that a time the store sets itself (updatedAt) is later than all.
const epoch = Date.parse('2020-01-01T00:00:00.000Z');
export const at = (seconds: number): Date => new Date(epoch + seconds * 1000);

export const subA = '0b7c4f7e-0000-4000-8000-00000000000a';
export const subB = '0b7c4f7e-0000-4000-8000-00000000000b';

export function subscription(id: string, displayName = `sub ${id}`): SubscriptionRecord {
  return { id, displayName, createdAt: at(0) };
}

export function token(
  subscriptionId: string | null,
  overrides: Partial<TokenRecord> = {},
): TokenRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    role: subscriptionId === null ? 'Admin' : 'Contributor',
    hash: randomUUID().replaceAll('-', ''),
    createdAt: at(1),
    revokedAt: null,
    ...overrides,
  };
}

export function enrollmentToken(
  subscriptionId: string,
  overrides: Partial<EnrollmentTokenRecord> = {},
): EnrollmentTokenRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    hash: randomUUID().replaceAll('-', ''),
    createdAt: at(1),
    expiresAt: at(3601),
    revokedAt: null,
    takeover: null,
    usedAt: null,
    maxUses: null,
    uses: 0,
    ...overrides,
  };
}

export function vm(subscriptionId: string, overrides: Partial<VmRecord> = {}): VmRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    resourceGroup: 'Fleet-RG',
    name: 'Web-01',
    location: 'westus',
    hostname: 'web-01.example',
    captureRoot: '/var/lib/wirewatch/captures',
    credentialHash: randomUUID().replaceAll('-', ''),
    createdAt: at(2),
    lastSeenAt: null,
    scaleSet: null,
    instanceId: null,
    ...overrides,
  };
}

/** Instance `instanceId` of scale set `scaleSet` in resource group Fleet-RG. */
export function instance(
  subscriptionId: string,
  scaleSet: string,
  instanceId: string,
  overrides: Partial<VmRecord> = {},
): VmRecord {
  return vm(subscriptionId, {
    name: `${scaleSet}_${instanceId}`,
    scaleSet,
    instanceId,
    hostname: `${scaleSet}-${instanceId}.example`,
    ...overrides,
  });
}

export function watcher(
  subscriptionId: string,
  overrides: Partial<NetworkWatcherRecord> = {},
): NetworkWatcherRecord {
  return {
    subscriptionId,
    resourceGroup: 'NetworkWatcherRG',
    name: 'NetworkWatcher_westus',
    location: 'westus',
    tags: { team: 'net' },
    etag: randomUUID(),
    createdAt: at(3),
    ...overrides,
  };
}

/**
 * What a test changes of a session: any field but the resolved capture, which is derived from the
 * properties; the properties given are laid over the fixture's (a file capture, TCP 443).
 */
export type SessionOverrides = Partial<Omit<SessionRecord, 'properties' | 'capture'>> & {
  readonly properties?: Partial<CaptureProperties>;
};

export function session(subscriptionId: string, overrides: SessionOverrides = {}): SessionRecord {
  const { properties: given, ...rest } = overrides;
  const properties: CaptureProperties = {
    target:
      '/subscriptions/x/resourceGroups/Fleet-RG/providers/Microsoft.Compute/virtualMachines/Web-01',
    bytesToCapturePerPacket: 0,
    storageLocation: { filePath: '/var/captures/capture-1.cap' },
    filters: [{ protocol: 'TCP', localPort: '443' }],
    ...given,
  };
  return {
    id: randomUUID(),
    subscriptionId,
    resourceGroup: 'NetworkWatcherRG',
    watcherName: 'NetworkWatcher_westus',
    name: 'Capture-1',
    location: 'westus',
    vmId: 'vm-1',
    parentId: null,
    instanceId: null,
    properties,
    capture: resolveCapture(properties),
    status: 'NotStarted',
    stopReason: null,
    errors: [],
    captureStartTime: null,
    stopTime: null,
    progress: null,
    files: [],
    stopRequested: null,
    deleteRequested: false,
    upload: null,
    etag: randomUUID(),
    createdAt: at(4),
    updatedAt: at(4),
    ...rest,
  };
}

export function operation(
  subscriptionId: string,
  sessionId: string,
  overrides: Partial<OperationRecord> = {},
): OperationRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    location: 'westus',
    kind: 'create',
    sessionId,
    resourceId: '/subscriptions/x/resourceGroups/NetworkWatcherRG/providers/…/packetCaptures/c',
    status: 'InProgress',
    error: null,
    createdAt: at(5),
    updatedAt: at(5),
    ...overrides,
  };
}

export function audit(subscriptionId: string, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    id: randomUUID(),
    subscriptionId,
    at: at(6),
    actor: 'token:t1',
    action: 'packetCapture.create',
    resourceId: '/subscriptions/x/…/packetCaptures/c',
    sourceIp: '192.0.2.10',
    detail: { outcome: 'Succeeded', status: 201 },
    ...overrides,
  };
}

/** Follows `next` from the first page; fails when it does not end within `maxPages`. */
export async function readAllPages<T>(
  fetchPage: (after: string | null) => Promise<Page<T>>,
  maxPages: number,
): Promise<T[]> {
  const items: T[] = [];
  let after: string | null = null;
  for (let pages = 0; pages < maxPages; pages++) {
    const page: Page<T> = await fetchPage(after);
    items.push(...page.items);
    if (page.next === null) return items;
    after = page.next;
  }
  throw new Error(`paging did not end within ${maxPages} pages`);
}

export function kinds(results: readonly CreateSessionResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const result of results) counts[result.kind] = (counts[result.kind] ?? 0) + 1;
  return counts;
}
