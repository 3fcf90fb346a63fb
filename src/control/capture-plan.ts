import { randomUUID } from 'node:crypto';
import { resolveCapture, type CaptureProperties } from '../model/capture-settings.js';
import type { NetworkWatcherRecord, SessionRecord, StorageAccountRecord } from '../store/store.js';
import type { CaptureParameters } from './capture-parameters.js';
import type { CaptureRef } from './control-context.js';

/** What a create has checked before it plans the capture. */
export interface PlanInput {
  readonly ref: CaptureRef;
  readonly watcher: NetworkWatcherRecord;
  readonly parsed: CaptureParameters;
  /** The registered storage account `storageId` names; undefined without one. */
  readonly account: StorageAccountRecord | undefined;
  readonly now: Date;
}

/**
 * A capture about to be created: the session to store and what to do once it is stored (send
 * the start to the VM's agent; for a scale set, create and start a child per instance).
 */
export interface CapturePlan {
  readonly record: SessionRecord;
  /** The audit entry's detail (the target, the planned file, …). */
  readonly audit: Record<string, unknown>;
  /** Runs once the record is stored (never for a re-PUT that found it there). */
  start(session: SessionRecord): Promise<void>;
}

/** What a new session is made of; the rest starts empty (NotStarted, no progress, no files). */
export type NewSession = Pick<
  SessionRecord,
  | 'subscriptionId'
  | 'resourceGroup'
  | 'watcherName'
  | 'name'
  | 'location'
  | 'vmId'
  | 'parentId'
  | 'instanceId'
  | 'properties'
>;

/** A new session, NotStarted; its upload Pending when its properties name a blob. */
export function newSession(fields: NewSession, now: Date): SessionRecord {
  const capture = resolveCapture(fields.properties);
  return {
    ...fields,
    id: randomUUID(),
    capture,
    status: 'NotStarted',
    stopReason: null,
    errors: [],
    captureStartTime: null,
    stopTime: null,
    progress: null,
    // Only files the agent reports having written for this session are ever recorded: the
    // path asked for may name a file that is not the capture's (another's, or a secret).
    files: [],
    stopRequested: null,
    deleteRequested: false,
    upload:
      capture.storage.blobUrl === undefined ? null : { state: 'Pending', blobs: [], error: null },
    etag: randomUUID(),
    createdAt: now,
    updatedAt: now,
  };
}

/** A new capture as the API names it (a VM's, or a scale-set capture's parent). */
export function newArmSession(
  input: PlanInput,
  vmId: string,
  properties: CaptureProperties,
): SessionRecord {
  const { ref, watcher } = input;
  return newSession(
    {
      subscriptionId: ref.subscriptionId,
      resourceGroup: watcher.resourceGroup,
      watcherName: watcher.name,
      name: ref.name,
      location: watcher.location,
      vmId,
      parentId: null,
      instanceId: null,
      properties,
    },
    input.now,
  );
}

/** The properties with the server-made blob URL as `storagePath`. */
export function withStoragePath(properties: CaptureProperties, url: string): CaptureProperties {
  return { ...properties, storageLocation: { ...properties.storageLocation, storagePath: url } };
}

/** The properties of a capture that runs `seconds` at most (a ring: its session limit too). */
export function withTimeLeft(properties: CaptureProperties, seconds: number): CaptureProperties {
  if (properties.continuousCapture !== true) {
    return { ...properties, timeLimitInSeconds: seconds };
  }
  return {
    ...properties,
    ...(properties.timeLimitInSeconds === undefined ? {} : { timeLimitInSeconds: seconds }),
    captureSettings: { ...properties.captureSettings, sessionTimeLimitInSeconds: seconds },
  };
}
