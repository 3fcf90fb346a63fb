/**
 * `capture create`'s request from its options, apart from the requests that find things (the
 * target, the network watcher, the storage account) so that tests can check it alone: which
 * option names the target (az's `--vm`, or `--target` with `--target-type`; wirewatch's
 * `--vmss`), the PacketCapture `properties` sent, and the server's refusals said about the
 * options typed.
 */
import type { GlobalOptions } from './cli-context.js';
import { RefusedError, UsageError } from './cli-errors.js';
import { refusalInOptionWords, type OptionFields } from './option-words.js';

/** The options of `capture create`, as commander parses them. */
export interface CreateOptions extends GlobalOptions {
  readonly resourceGroup?: string;
  readonly name: string;
  readonly vm?: string;
  readonly target?: string;
  readonly vmss?: string;
  readonly location?: string;
  readonly captureSize?: number;
  readonly captureLimit?: number;
  readonly timeLimit?: number;
  readonly storageAccount?: string;
  readonly storagePath?: string;
  readonly filePath?: string;
  readonly localPath?: string;
  readonly filters?: Record<string, unknown>[];
  readonly targetType?: 'AzureVM' | 'AzureVMSS';
  readonly include?: string[];
  readonly exclude?: string[];
  readonly continuousCapture?: boolean;
  readonly fileCount?: number;
  readonly fileSize?: number;
  readonly sessionTimeLimit?: number;
  readonly includeOwnTraffic?: boolean;
  readonly wait?: boolean;
}

/** What the capture runs on, and the option that said so. */
export interface TargetChoice {
  readonly type: 'AzureVM' | 'AzureVMSS';
  /** A name (in `-g`) or an ARM id, as typed. */
  readonly nameOrId: string;
  readonly option: '--vm' | '--target' | '--vmss';
}

const TARGET_OPTIONS = ['vm', 'target', 'vmss'] as const;

/**
 * The target from `--vm`, `--target` or `--vmss` (exactly one): az's `--vm` and `--target` name
 * a VM, or a scale set with `--target-type AzureVMSS`; `--vmss` is a scale set.
 */
export function targetChoice(o: CreateOptions): TargetChoice {
  const given = TARGET_OPTIONS.filter((k) => o[k] !== undefined);
  const key = given[0];
  if (key === undefined) {
    throw new UsageError(
      'say what to capture on: --vm VM, --vmss SCALE_SET, or --target with --target-type',
    );
  }
  if (given.length > 1) {
    throw new UsageError(
      `give one of --vm, --target and --vmss, not ${given.map((k) => `--${k}`).join(' and ')}`,
    );
  }
  const nameOrId = o[key]!;
  if (key === 'vmss') {
    if (o.targetType === 'AzureVM') {
      throw new UsageError('--vmss names a scale set: --target-type AzureVM is for --vm');
    }
    return { type: 'AzureVMSS', nameOrId, option: '--vmss' };
  }
  return { type: o.targetType ?? 'AzureVM', nameOrId, option: `--${key}` };
}

/** The PacketCapture fields sent: Azure's PacketCaptureParameters. */
export interface CreateProperties {
  readonly target: string;
  readonly targetType?: 'AzureVM' | 'AzureVMSS';
  readonly scope?: { readonly include?: string[]; readonly exclude?: string[] };
  readonly bytesToCapturePerPacket?: number;
  readonly totalBytesPerSession?: number;
  readonly timeLimitInSeconds?: number;
  readonly storageLocation: Readonly<Record<string, string>>;
  readonly filters?: Record<string, unknown>[];
  readonly continuousCapture?: boolean;
  readonly captureSettings?: Readonly<Record<string, number>>;
  readonly includeOwnTraffic?: true;
}

/**
 * The `properties` of the PUT: `targetId` is the id of the VM or scale set found for `choice`,
 * `storageId` the storage account's. targetType is sent when typed, or implied by `--vmss`.
 */
export function createProperties(
  o: CreateOptions,
  choice: TargetChoice,
  targetId: string,
  storageId: string | undefined,
): CreateProperties {
  const file = o.localPath ?? o.filePath;
  // Azure's rule: filePath for a plain capture, localPath once continuousCapture is given.
  const fileField =
    o.localPath !== undefined || o.continuousCapture !== undefined ? 'localPath' : 'filePath';
  const scope =
    o.include === undefined && o.exclude === undefined
      ? undefined
      : {
          ...(o.include === undefined ? {} : { include: o.include }),
          ...(o.exclude === undefined ? {} : { exclude: o.exclude }),
        };
  const typed = o.targetType !== undefined || choice.option === '--vmss';
  return {
    target: targetId,
    ...(typed ? { targetType: choice.type } : {}),
    ...(scope === undefined ? {} : { scope }),
    ...(o.captureSize === undefined ? {} : { bytesToCapturePerPacket: o.captureSize }),
    ...(o.captureLimit === undefined ? {} : { totalBytesPerSession: o.captureLimit }),
    ...(o.timeLimit === undefined ? {} : { timeLimitInSeconds: o.timeLimit }),
    storageLocation: {
      ...(storageId === undefined ? {} : { storageId }),
      ...(o.storagePath === undefined ? {} : { storagePath: o.storagePath }),
      ...(file === undefined ? {} : { [fileField]: file }),
    },
    ...(o.filters === undefined ? {} : { filters: o.filters }),
    ...(o.continuousCapture === undefined ? {} : { continuousCapture: o.continuousCapture }),
    ...(o.continuousCapture === true
      ? {
          captureSettings: {
            ...(o.fileCount === undefined ? {} : { fileCount: o.fileCount }),
            ...(o.fileSize === undefined ? {} : { fileSizeInBytes: o.fileSize }),
            ...(o.sessionTimeLimit === undefined
              ? {}
              : { sessionTimeLimitInSeconds: o.sessionTimeLimit }),
          },
        }
      : {}),
    ...(o.includeOwnTraffic === true ? { includeOwnTraffic: true } : {}),
  };
}

/** The PacketCapture fields (under `properties`) by the option of `create` that sets them. */
const CREATE_FIELDS: OptionFields = {
  target: '--vm',
  targetType: '--target-type',
  scope: '--include/--exclude',
  'scope.include': '--include',
  'scope.exclude': '--exclude',
  bytesToCapturePerPacket: '--capture-size',
  totalBytesPerSession: '--capture-limit',
  timeLimitInSeconds: '--time-limit',
  'storageLocation.storageId': '--storage-account',
  'storageLocation.storagePath': '--storage-path',
  'storageLocation.filePath': '--file-path',
  'storageLocation.localPath': '--local-path',
  filters: '--filters',
  continuousCapture: '--continuous-capture',
  includeOwnTraffic: '--include-own-traffic',
  'captureSettings.fileCount': '--file-count',
  'captureSettings.fileSizeInBytes': '--file-size',
  'captureSettings.sessionTimeLimitInSeconds': '--session-time-limit',
};

/** The fields of {@link CREATE_FIELDS} named by the options this command line typed. */
function typedFields(o: CreateOptions, choice: TargetChoice): OptionFields {
  return {
    ...CREATE_FIELDS,
    target: choice.option,
    ...(choice.option === '--vmss' && o.targetType === undefined ? { targetType: '--vmss' } : {}),
    // --file-path goes to localPath with --continuous-capture (Azure's rule): name what was typed.
    ...(o.localPath === undefined ? { 'storageLocation.localPath': '--file-path' } : {}),
  };
}

/** The server's refusal of a create, about the option the user typed rather than the field. */
export function refusalInCreateWords(
  err: unknown,
  o: CreateOptions,
  choice: TargetChoice,
  properties: CreateProperties,
): unknown {
  return refusalInOptionWords(err, typedFields(o, choice), properties);
}

/**
 * A capture that failed to start, said about the option typed: the agent's error names the
 * field (`filePath: cannot create …`) in its message only, which `--file-path` (or
 * `--local-path`) set.
 */
export function startFailureInCreateWords(
  err: unknown,
  o: CreateOptions,
  choice: TargetChoice,
  properties: CreateProperties,
): unknown {
  if (!(err instanceof RefusedError) || err.target !== undefined) return err;
  const field = /^(filePath|localPath): /.exec(err.message)?.[1];
  if (field === undefined) return err;
  // The agent says filePath for a ring's localPath too: the field is the one create sent.
  const sent = o.localPath === undefined && o.continuousCapture !== true ? 'filePath' : 'localPath';
  const target = `properties.storageLocation.${sent}`;
  const message = `${target}: ${err.message.slice(field.length + 2)}`;
  return refusalInCreateWords(
    new RefusedError(err.status, err.code, message, target),
    o,
    choice,
    properties,
  );
}
