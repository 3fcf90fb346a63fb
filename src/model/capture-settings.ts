/**
 * A packet capture's settings, in two types:
 *
 * - {@link CaptureProperties}, the properties as stored and echoed by the API: what the user
 *   sent (a create body's `properties`, the type of the request schema), with Azure's defaults
 *   filled in, enum values in Azure's spelling and the server's blob URL as `storagePath`.
 *   Stored as JSON; read back through {@link readCaptureProperties}.
 * - {@link ResolvedCapture}, what the capture is: limits with defaults and "0 means the maximum"
 *   applied, a ring's settings, how long it runs, its filters, where it is stored. Derived from
 *   the properties by {@link resolveCapture} and carried on the session record; everything after
 *   create (the agent's assignment, views, downloads, deadlines) reads this; only the echo of
 *   the properties in the API (and a re-PUT's comparison) reads the properties.
 *
 * The create body is checked field by field before it is stored
 * (src/control/capture-parameters.ts: filters parsed, limits in range, storage rules); resolving
 * only applies the rules to values that are already checked, so it never throws.
 */
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import {
  PacketCaptureParametersSchema,
  PacketCaptureStorageLocationSchema,
  type PacketCaptureFilterSchema,
} from './arm.js';
import {
  limitValue,
  ringDurationSeconds,
  type CaptureLimits,
  type RingSettings,
} from './capture-limits.js';
import { parseResourceId, type ResourceIdParts } from './resource-id.js';

/**
 * A packet capture's `properties` as stored: the create schema's, except that `storagePath` is
 * the server's (the blob URL it made, as long as the account's endpoint makes it), not a user's.
 */
const CapturePropertiesSchema = Type.Object({
  ...PacketCaptureParametersSchema.properties,
  storageLocation: Type.Object({
    ...PacketCaptureStorageLocationSchema.properties,
    storagePath: Type.Optional(Type.String()),
  }),
});

/** A packet capture's `properties` as stored and echoed (Azure's PacketCaptureParameters). */
export type CaptureProperties = Static<typeof CapturePropertiesSchema>;

/** Azure's PacketCaptureFilter, as the API takes and echoes it. */
export type CaptureFilter = Static<typeof PacketCaptureFilterSchema>;

/** Azure's PacketCaptureTargetType and PcProtocol values, accepted in any letter case. */
export const TARGET_TYPES = ['AzureVM', 'AzureVMSS'] as const;
export type TargetType = (typeof TARGET_TYPES)[number];
export const PROTOCOLS = ['TCP', 'UDP', 'Any'] as const;

/** `value` spelt as the enum spells it; undefined when it is none of the values. */
export function spelled<T extends string>(values: readonly T[], value: string): T | undefined {
  return values.find((v) => v.toLowerCase() === value.toLowerCase());
}

/**
 * A scale-set capture's scope as given (Azure's PacketCaptureMachineScope): instance ids ("0") or
 * instance resource ids; both empty selects every instance.
 */
export interface CaptureScope {
  readonly include: readonly string[];
  readonly exclude: readonly string[];
}

/**
 * What a capture runs on: one VM, or the instances of a scale set its scope selects (each runs
 * as a child session of its own VM, src/control/scale-set-captures.ts).
 */
export type CaptureTarget =
  | {
      readonly type: 'AzureVM';
      /** The target's ARM id, as given. */
      readonly id: string;
    }
  | {
      readonly type: 'AzureVMSS';
      /** The scale set's ARM id, as given. */
      readonly id: string;
      readonly scope: CaptureScope;
    };

/** A storage account's ARM id, parsed. */
export type StorageAccountRef = ResourceIdParts;

/** Parses a storage account's ARM id; undefined when the text is not one. */
export function parseStorageAccountId(id: string): StorageAccountRef | undefined {
  return parseResourceId(id, 'Microsoft.Storage/storageAccounts');
}

/** Where a capture goes. */
export interface CaptureStorage {
  /** The storage account `storageId` names; undefined for a capture kept only on the VM. */
  readonly account: StorageAccountRef | undefined;
  /** The capture's blob URL (`storagePath`, made by the server at create). */
  readonly blobUrl: string | undefined;
  /**
   * The file asked for on the VM (`filePath`, or a ring's `localPath`) and the field it came in;
   * undefined when only a storage account was given (the agent then spools).
   */
  readonly localFile: { readonly path: string; readonly field: string } | undefined;
}

/** A capture as it runs: every setting resolved. */
export interface ResolvedCapture {
  readonly target: CaptureTarget;
  /** The filters, each with its protocol in Azure's spelling (Any when absent). */
  readonly filters: readonly CaptureFilter[];
  /**
   * Limits with defaults and "0 means the maximum" applied. A ring's timeLimitInSeconds is the
   * default when none was given; what ends a ring is `ring.sessionTimeLimitInSeconds`.
   */
  readonly limits: CaptureLimits;
  /** A continuous capture's ring; its session limit is already the earlier of both limits. */
  readonly ring: RingSettings | undefined;
  /** How long the capture runs at most, in seconds: its deadline is its start plus this. */
  readonly durationSeconds: number;
  readonly storage: CaptureStorage;
  /** wirewatch's includeOwnTraffic: the agent captures its own connections too. */
  readonly includeOwnTraffic: boolean;
}

/** Resolves checked properties (see the module comment); never throws. */
export function resolveCapture(p: CaptureProperties): ResolvedCapture {
  const limits: CaptureLimits = {
    bytesToCapturePerPacket: limitValue('bytesToCapturePerPacket', p.bytesToCapturePerPacket),
    totalBytesPerSession: limitValue('totalBytesPerSession', p.totalBytesPerSession),
    timeLimitInSeconds: limitValue('timeLimitInSeconds', p.timeLimitInSeconds),
  };
  const ring = p.continuousCapture === true ? ringOf(p, limits) : undefined;
  return {
    target: targetOf(p),
    filters: (p.filters ?? []).map(withProtocolSpelled),
    limits,
    ring,
    durationSeconds: ring?.sessionTimeLimitInSeconds ?? limits.timeLimitInSeconds,
    storage: storageOf(p),
    includeOwnTraffic: p.includeOwnTraffic === true,
  };
}

function targetOf(p: CaptureProperties): CaptureTarget {
  if (p.targetType === undefined || spelled(TARGET_TYPES, p.targetType) !== 'AzureVMSS') {
    return { type: 'AzureVM', id: p.target };
  }
  return {
    type: 'AzureVMSS',
    id: p.target,
    scope: { include: p.scope?.include ?? [], exclude: p.scope?.exclude ?? [] },
  };
}

/**
 * A ring's settings. A continuous capture ends at the earlier of its session limit and an
 * explicit timeLimitInSeconds (echoed only when it was given); the agent is given that as the
 * session limit.
 */
function ringOf(p: CaptureProperties, limits: CaptureLimits): RingSettings {
  const settings = p.captureSettings;
  const sessionTimeLimitInSeconds = limitValue(
    'sessionTimeLimitInSeconds',
    settings?.sessionTimeLimitInSeconds,
  );
  return {
    fileCount: limitValue('fileCount', settings?.fileCount),
    fileSizeInBytes: limitValue('fileSizeInBytes', settings?.fileSizeInBytes),
    sessionTimeLimitInSeconds: ringDurationSeconds(
      { sessionTimeLimitInSeconds },
      p.timeLimitInSeconds === undefined ? undefined : limits.timeLimitInSeconds,
    ),
  };
}

/**
 * A filter with its protocol in Azure's spelling whatever case it came in, Any when absent or
 * empty; a protocol that is none of them (never stored by a checked create) stays as it is.
 */
export function withProtocolSpelled(filter: CaptureFilter): CaptureFilter {
  const given = filter.protocol ?? '';
  return { ...filter, protocol: given === '' ? 'Any' : (spelled(PROTOCOLS, given) ?? given) };
}

function storageOf(p: CaptureProperties): CaptureStorage {
  const { storageId, storagePath, filePath, localPath } = p.storageLocation;
  // Azure's rule: filePath for a plain capture, localPath when continuousCapture is given.
  const field = isContinuousCaptureGiven(p) ? 'localPath' : 'filePath';
  const path = field === 'localPath' ? localPath : filePath;
  return {
    account: storageId === undefined ? undefined : parseStorageAccountId(storageId),
    blobUrl: storagePath,
    localFile:
      path === undefined ? undefined : { path, field: `properties.storageLocation.${field}` },
  };
}

/** continuousCapture was given (true or false): the local file is then named by localPath. */
export function isContinuousCaptureGiven(p: Pick<CaptureProperties, 'continuousCapture'>): boolean {
  return p.continuousCapture === true || p.continuousCapture === false;
}

const propertiesCheck = Compile(CapturePropertiesSchema);

/**
 * Stored properties (parsed JSON) as {@link CaptureProperties}; throws when they are not, which
 * only a store written by something else than this server can make happen.
 */
export function readCaptureProperties(value: unknown, what: string): CaptureProperties {
  if (!propertiesCheck.Check(value)) {
    throw new Error(
      `${what}: stored packet capture properties do not have the shape of a create body`,
    );
  }
  return value;
}
