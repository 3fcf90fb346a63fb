import { checkCapturePath } from '../capture/capture-path.js';
import { parseFilters } from '../capture/filter.js';
import { resolveLimit, resolveRingSettings, ringDurationSeconds } from '../capture/limits.js';
import type { PacketCaptureFilter } from '../capture/filter-spec.js';
import type { CaptureAssignment } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import { parseResourceId, type ResourceIdParts } from '../model/resource-id.js';
import { parseVmResourceId, type VmRef } from './resource-ids.js';

/**
 * A packet capture's create body (Azure's PacketCapture, `{"properties": {...}}`), checked field
 * by field and turned into two things: the `properties` the API echoes (what the user sent, with
 * Azure's defaults filled in — also what a re-PUT is compared with) and the resolved limits the
 * agent enforces. The envelope's types are checked by the route schema first; this adds the
 * rules a schema cannot say.
 */
export interface CaptureParameters {
  readonly target: VmRef;
  /** The echoed `properties`, JSON-serialisable, without provisioningState. */
  readonly properties: Record<string, unknown>;
  /** Where the agent writes the capture (absolute, under the VM's capture root). */
  readonly filePath: string;
  readonly limits: Pick<
    CaptureAssignment,
    | 'bytesToCapturePerPacket'
    | 'totalBytesPerSession'
    | 'timeLimitInSeconds'
    | 'continuousCapture'
    | 'captureSettings'
  >;
  readonly filters: PacketCaptureFilter[];
  /** wirewatch's includeOwnTraffic: the agent captures its own connections too. */
  readonly includeOwnTraffic: boolean;
}

/** The body as the route schema lets it through: types right, rules unchecked. */
export interface PacketCaptureBody {
  readonly properties: {
    readonly target: string;
    readonly targetType?: string;
    readonly scope?: { readonly include?: readonly string[]; readonly exclude?: readonly string[] };
    readonly bytesToCapturePerPacket?: number;
    readonly totalBytesPerSession?: number;
    readonly timeLimitInSeconds?: number;
    readonly storageLocation: {
      readonly storageId?: string;
      readonly storagePath?: string;
      readonly filePath?: string;
      readonly localPath?: string;
    };
    readonly filters?: readonly PacketCaptureFilter[];
    readonly continuousCapture?: boolean | null;
    readonly captureSettings?: {
      readonly fileCount?: number;
      readonly fileSizeInBytes?: number;
      readonly sessionTimeLimitInSeconds?: number;
    };
    readonly includeOwnTraffic?: boolean;
  };
}

const P = 'properties.';

/**
 * Checks a create body. `captureRoot` is the target VM's (known only after the target is found),
 * so the path check is a second step: `checkCaptureFilePath`.
 */
export function parseCaptureBody(body: PacketCaptureBody): Omit<CaptureParameters, 'filePath'> & {
  /** The local file asked for (filePath or localPath); undefined when only storageId was given. */
  readonly requestedPath: { readonly path: string; readonly field: string } | undefined;
  /** The storage account named by storageId. */
  readonly storageAccount: StorageAccountRef | undefined;
} {
  const p = body.properties;
  const target = parseVmResourceId(p.target);
  const targetType = parseTargetType(p.targetType);
  if (targetType === 'AzureVMSS') {
    throw new WirewatchError(
      'InvalidTarget',
      `${P}targetType: AzureVMSS (scale sets) is not supported yet; target one VM with AzureVM`,
      { target: `${P}targetType` },
    );
  }
  if (!target) {
    throw new WirewatchError(
      'InvalidTarget',
      `${P}target: "${clip(p.target)}" is not a virtual machine id: /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Compute/virtualMachines/{name}`,
      { target: `${P}target` },
    );
  }
  if ((p.scope?.include?.length ?? 0) > 0 || (p.scope?.exclude?.length ?? 0) > 0) {
    throw new WirewatchError(
      'InvalidRequestContent',
      `${P}scope: include and exclude apply only to targetType AzureVMSS`,
      { target: `${P}scope` },
    );
  }

  // Echoed as sent, but with the protocol in Azure's spelling (PcProtocol: TCP, UDP, Any)
  // whatever case it came in, and Any when absent or empty.
  const filters = prefixed(() => {
    const specs = parseFilters(p.filters);
    return (p.filters ?? []).map((f, i) => ({ ...f, protocol: specs[i]!.protocol }));
  });
  const bytesToCapturePerPacket = prefixed(() =>
    resolveLimit('bytesToCapturePerPacket', p.bytesToCapturePerPacket),
  );
  const totalBytesPerSession = prefixed(() =>
    resolveLimit('totalBytesPerSession', p.totalBytesPerSession),
  );
  const timeLimitInSeconds = prefixed(() =>
    resolveLimit('timeLimitInSeconds', p.timeLimitInSeconds),
  );
  const continuous = p.continuousCapture === true;
  const settings = continuous
    ? prefixed(() => resolveRingSettings(p.captureSettings ?? {}, 'captureSettings.'))
    : undefined;
  // A continuous capture ends at the earlier of its session limit and an explicit
  // timeLimitInSeconds; the agent is given that as the session limit.
  const ring =
    settings === undefined
      ? undefined
      : {
          ...settings,
          sessionTimeLimitInSeconds: ringDurationSeconds(
            settings,
            p.timeLimitInSeconds === undefined ? undefined : timeLimitInSeconds,
          ),
        };

  const storage = p.storageLocation;
  let storageAccount: StorageAccountRef | undefined;
  if (storage.storageId !== undefined) {
    storageAccount = parseStorageAccountId(storage.storageId);
    if (!storageAccount) {
      throw new WirewatchError(
        'StorageAccountNotFound',
        `${P}storageLocation.storageId: "${clip(storage.storageId)}" is not a storage account id: /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Storage/storageAccounts/{name}`,
        { target: `${P}storageLocation.storageId` },
      );
    }
  }
  // Azure's rule: filePath for a plain capture, localPath when continuousCapture is given.
  const field = continuousSet(p) ? 'localPath' : 'filePath';
  const other = field === 'localPath' ? 'filePath' : 'localPath';
  if (storage[other] !== undefined) {
    throw new WirewatchError(
      'InvalidStorageLocation',
      field === 'localPath'
        ? `${P}storageLocation.filePath: not valid when continuousCapture is given; use storageLocation.localPath`
        : `${P}storageLocation.localPath: valid only when continuousCapture is given; use storageLocation.filePath`,
      { target: `${P}storageLocation.${other}` },
    );
  }
  const path = storage[field];
  if (path === undefined && storageAccount === undefined) {
    throw new WirewatchError(
      'InvalidStorageLocation',
      `${P}storageLocation.${field}: required unless storageId is given; give storageId (a storage account), ${field} (a file on the VM, e.g. /var/captures/{name}.cap), or both`,
      { target: `${P}storageLocation.${field}` },
    );
  }

  const properties: Record<string, unknown> = {
    target: p.target,
    ...(p.targetType === undefined ? {} : { targetType }),
    ...(p.scope === undefined ? {} : { scope: p.scope }),
    bytesToCapturePerPacket: p.bytesToCapturePerPacket ?? bytesToCapturePerPacket,
    totalBytesPerSession: p.totalBytesPerSession ?? 1073741824,
    // A continuous capture echoes timeLimitInSeconds only when it was given: its default does
    // not apply to a ring, so echoing it would promise a limit that does not hold.
    ...(continuous && p.timeLimitInSeconds === undefined
      ? {}
      : { timeLimitInSeconds: p.timeLimitInSeconds ?? 18000 }),
    // storagePath is the server's to set (the blob URL); what a client sent there is replaced.
    storageLocation: omitStoragePath(storage),
    filters,
    ...(p.continuousCapture === undefined || p.continuousCapture === null
      ? {}
      : { continuousCapture: p.continuousCapture }),
    ...(ring === undefined ? {} : { captureSettings: { ...defaultsOf(p.captureSettings) } }),
    ...(p.includeOwnTraffic === undefined ? {} : { includeOwnTraffic: p.includeOwnTraffic }),
  };
  return {
    target,
    properties,
    filters,
    includeOwnTraffic: p.includeOwnTraffic === true,
    limits: {
      bytesToCapturePerPacket,
      totalBytesPerSession,
      timeLimitInSeconds,
      continuousCapture: continuous,
      ...(ring === undefined ? {} : { captureSettings: ring }),
    },
    requestedPath: path === undefined ? undefined : { path, field: `${P}storageLocation.${field}` },
    storageAccount,
  };
}

/** Azure's PacketCaptureTargetType and PcProtocol values, accepted in any letter case. */
const TARGET_TYPES = ['AzureVM', 'AzureVMSS'] as const;
const PROTOCOLS = ['TCP', 'UDP', 'Any'] as const;

/** `value` spelt as the enum spells it; undefined when it is none of the values. */
function spelled<T extends string>(values: readonly T[], value: string): T | undefined {
  return values.find((v) => v.toLowerCase() === value.toLowerCase());
}

function parseTargetType(value: string | undefined): (typeof TARGET_TYPES)[number] {
  if (value === undefined) return 'AzureVM';
  const found = spelled(TARGET_TYPES, value);
  if (found === undefined) {
    throw new WirewatchError(
      'InvalidRequestContent',
      `${P}targetType: "${clip(value)}" is not a target type (expected ${TARGET_TYPES.join(' or ')})`,
      { target: `${P}targetType` },
    );
  }
  return found;
}

/**
 * Stored properties as the API echoes them: enum values in Azure's spelling. Rows stored before
 * the create normalised them (a filter's protocol as sent, `"tcp"`) read like new ones and
 * compare equal to a re-PUT of the same body.
 */
export function echoedProperties(
  properties: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...properties };
  const filters = properties['filters'];
  if (Array.isArray(filters)) {
    out['filters'] = filters.map((f: unknown) => {
      if (typeof f !== 'object' || f === null) return f;
      const protocol = (f as { protocol?: unknown }).protocol;
      if (protocol !== undefined && typeof protocol !== 'string') return f;
      const given = protocol ?? '';
      return { ...f, protocol: given === '' ? 'Any' : (spelled(PROTOCOLS, given) ?? given) };
    });
  }
  const targetType = properties['targetType'];
  if (typeof targetType === 'string') {
    out['targetType'] = spelled(TARGET_TYPES, targetType) ?? targetType;
  }
  return out;
}

export type StorageAccountRef = ResourceIdParts;

/** Parses a storage account's ARM id; undefined when the text is not one. */
export function parseStorageAccountId(id: string): StorageAccountRef | undefined {
  return parseResourceId(id, 'Microsoft.Storage/storageAccounts');
}

function omitStoragePath(
  storage: PacketCaptureBody['properties']['storageLocation'],
): Record<string, string> {
  const { storagePath: _serverMade, ...rest } = storage;
  return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
}

/**
 * Stored properties without the server-made storagePath: what a re-PUT's parsed properties
 * (which never carry one) are compared with.
 */
export function withoutStoragePath(
  properties: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const location = properties['storageLocation'] as
    PacketCaptureBody['properties']['storageLocation'] | undefined;
  return { ...echoedProperties(properties), storageLocation: omitStoragePath(location ?? {}) };
}

/** The capture file path against the target VM's capture root. */
export function checkCaptureFilePath(path: string, field: string, captureRoot: string): string {
  return checkCapturePath(path, captureRoot, field);
}

function defaultsOf(settings: PacketCaptureBody['properties']['captureSettings']) {
  return {
    fileCount: settings?.fileCount ?? 10,
    fileSizeInBytes: settings?.fileSizeInBytes ?? 104857600,
    sessionTimeLimitInSeconds: settings?.sessionTimeLimitInSeconds ?? 86400,
  };
}

function continuousSet(p: PacketCaptureBody['properties']): boolean {
  return p.continuousCapture === true || p.continuousCapture === false;
}

/** Re-throws a capture-engine validation error with the field named as the API spells it. */
function prefixed<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof WirewatchError && err.target !== undefined) {
      throw new WirewatchError(err.code, `${P}${err.message}`, { target: `${P}${err.target}` });
    }
    throw err;
  }
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

/** Canonical JSON (sorted keys) so a re-PUT can be compared with what is stored. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}
