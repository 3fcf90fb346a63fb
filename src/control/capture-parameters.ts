import { checkCapturePath } from '../capture/capture-path.js';
import { parseFilters } from '../capture/filter.js';
import type { PacketCaptureInput } from '../model/arm.js';
import { captureLimitBounds, resolveLimit, resolveRingSettings } from '../model/capture-limits.js';
import {
  isContinuousCaptureGiven,
  parseStorageAccountId,
  resolveCapture,
  spelled,
  TARGET_TYPES,
  withProtocolSpelled,
  type CaptureProperties,
  type ResolvedCapture,
  type TargetType,
} from '../model/capture-settings.js';
import { WirewatchError } from '../model/errors.js';
import { parseResourceId, type ResourceIdParts } from '../model/resource-id.js';
import { parseVmResourceId, type VmRef } from './resource-ids.js';

/** What a create body targets: one VM, or a scale set (its instances chosen by the scope). */
export type CaptureTargetRef =
  | { readonly type: 'AzureVM'; readonly vm: VmRef }
  | { readonly type: 'AzureVMSS'; readonly scaleSet: ResourceIdParts };

/**
 * A packet capture's create body (Azure's PacketCapture, `{"properties": {...}}`), checked field
 * by field and turned into two things: the `properties` the API echoes (what the user sent, with
 * Azure's defaults filled in — also what a re-PUT is compared with) and the resolved capture
 * (src/model/capture-settings.ts). The envelope's types are checked by the route schema first;
 * this adds the rules a schema cannot say. Filters are parsed here, once; the agent checks what
 * it is sent with the same parser.
 */
export interface CaptureParameters {
  readonly target: CaptureTargetRef;
  /** The echoed `properties`, without provisioningState and the server-made storagePath. */
  readonly properties: CaptureProperties;
  readonly capture: ResolvedCapture;
}

const P = 'properties.';

/**
 * Checks a create body. `captureRoot` is the target VM's (known only after the target is found),
 * so the path check is a second step: `checkCaptureFilePath`.
 */
export function parseCaptureBody(body: PacketCaptureInput): CaptureParameters {
  const p = body.properties;
  const targetType = parseTargetType(p.targetType);
  const target = parseTarget(targetType, p.target);
  if (
    targetType === 'AzureVM' &&
    ((p.scope?.include?.length ?? 0) > 0 || (p.scope?.exclude?.length ?? 0) > 0)
  ) {
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
  // Checked here with the field named; their values are resolved by resolveCapture.
  prefixed(() => resolveLimit('bytesToCapturePerPacket', p.bytesToCapturePerPacket));
  prefixed(() => resolveLimit('totalBytesPerSession', p.totalBytesPerSession));
  prefixed(() => resolveLimit('timeLimitInSeconds', p.timeLimitInSeconds));
  const continuous = p.continuousCapture === true;
  if (continuous) prefixed(() => resolveRingSettings(p.captureSettings ?? {}, 'captureSettings.'));

  const storage = p.storageLocation;
  const storageAccount =
    storage.storageId === undefined ? undefined : parseStorageAccountId(storage.storageId);
  if (storage.storageId !== undefined) {
    if (!storageAccount) {
      throw new WirewatchError(
        'StorageAccountNotFound',
        `${P}storageLocation.storageId: "${clip(storage.storageId)}" is not a storage account id: /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Storage/storageAccounts/{name}`,
        { target: `${P}storageLocation.storageId` },
      );
    }
  }
  // Azure's rule: filePath for a plain capture, localPath when continuousCapture is given.
  const field = isContinuousCaptureGiven(p) ? 'localPath' : 'filePath';
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
  if (storage[field] === undefined && storageAccount === undefined) {
    throw new WirewatchError(
      'InvalidStorageLocation',
      `${P}storageLocation.${field}: required unless storageId is given; give storageId (a storage account), ${field} (a file on the VM, e.g. /var/captures/{name}.cap), or both`,
      { target: `${P}storageLocation.${field}` },
    );
  }

  const properties: CaptureProperties = {
    target: p.target,
    ...(p.targetType === undefined ? {} : { targetType }),
    ...(p.scope === undefined ? {} : { scope: p.scope }),
    bytesToCapturePerPacket: p.bytesToCapturePerPacket ?? defaultOf('bytesToCapturePerPacket'),
    totalBytesPerSession: p.totalBytesPerSession ?? defaultOf('totalBytesPerSession'),
    // A continuous capture echoes timeLimitInSeconds only when it was given: its default does
    // not apply to a ring, so echoing it would promise a limit that does not hold.
    ...(continuous && p.timeLimitInSeconds === undefined
      ? {}
      : { timeLimitInSeconds: p.timeLimitInSeconds ?? defaultOf('timeLimitInSeconds') }),
    // storagePath is the server's to set (the blob URL); what a client sent there is replaced.
    storageLocation: omitStoragePath(storage),
    filters,
    ...(p.continuousCapture === undefined || p.continuousCapture === null
      ? {}
      : { continuousCapture: p.continuousCapture }),
    ...(continuous
      ? {
          captureSettings: {
            fileCount: p.captureSettings?.fileCount ?? defaultOf('fileCount'),
            fileSizeInBytes: p.captureSettings?.fileSizeInBytes ?? defaultOf('fileSizeInBytes'),
            sessionTimeLimitInSeconds:
              p.captureSettings?.sessionTimeLimitInSeconds ??
              defaultOf('sessionTimeLimitInSeconds'),
          },
        }
      : {}),
    ...(p.includeOwnTraffic === undefined ? {} : { includeOwnTraffic: p.includeOwnTraffic }),
  };
  return { target, properties, capture: resolveCapture(properties) };
}

function parseTarget(type: TargetType, id: string): CaptureTargetRef {
  if (type === 'AzureVM') {
    const vm = parseVmResourceId(id);
    if (vm) return { type, vm };
    throw new WirewatchError(
      'InvalidTarget',
      `${P}target: "${clip(id)}" is not a virtual machine id: /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Compute/virtualMachines/{name}`,
      { target: `${P}target` },
    );
  }
  const scaleSet = parseResourceId(id, 'Microsoft.Compute/virtualMachineScaleSets');
  if (scaleSet) return { type, scaleSet };
  throw new WirewatchError(
    'InvalidTarget',
    `${P}target: "${clip(id)}" is not a virtual machine scale set id (targetType AzureVMSS): /subscriptions/{subscriptionId}/resourceGroups/{resourceGroup}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}`,
    { target: `${P}target` },
  );
}

function defaultOf(name: keyof typeof captureLimitBounds): number {
  return captureLimitBounds[name].default;
}

function parseTargetType(value: string | undefined): TargetType {
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
export function echoedProperties(properties: CaptureProperties): CaptureProperties {
  const { filters, targetType } = properties;
  return {
    ...properties,
    ...(filters === undefined ? {} : { filters: filters.map(withProtocolSpelled) }),
    ...(targetType === undefined
      ? {}
      : { targetType: spelled(TARGET_TYPES, targetType) ?? targetType }),
  };
}

function omitStoragePath(
  storage: CaptureProperties['storageLocation'],
): CaptureProperties['storageLocation'] {
  const { storagePath: _serverMade, ...rest } = storage;
  return Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined));
}

/**
 * Stored properties without the server-made storagePath: what a re-PUT's parsed properties
 * (which never carry one) are compared with.
 */
export function withoutStoragePath(properties: CaptureProperties): CaptureProperties {
  return {
    ...echoedProperties(properties),
    storageLocation: omitStoragePath(properties.storageLocation),
  };
}

/** The capture file path against the target VM's capture root. */
export function checkCaptureFilePath(path: string, field: string, captureRoot: string): string {
  return checkCapturePath(path, captureRoot, field);
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

/** A user's text, cut to 200 characters, for an error message. */
export function clip(text: string): string {
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
