import { echoedProperties } from '../control/capture-parameters.js';
import type { InstanceSession, ScaleSet } from '../control/control-plane.js';
import { summedProgress } from '../control/scale-set-status.js';
import {
  captureResourceId,
  hostResourceId,
  scaleSetResourceId,
  watcherResourceId,
} from '../control/resource-ids.js';
import { toPcError } from '../model/pc-error.js';
import type {
  EnrollmentTokenRecord,
  NetworkWatcherRecord,
  SessionRecord,
  VmRecord,
} from '../store/store.js';

/** The JSON bodies of the API, built from store records. Field names are Azure's. */

function provisioningState(session: SessionRecord): string {
  if (session.deleteRequested) return 'Deleting';
  switch (session.status) {
    case 'NotStarted':
      return 'Updating';
    case 'Running':
    case 'Stopped':
      return 'Succeeded';
    case 'Error':
      return 'Failed';
  }
}

function captureIdOf(session: SessionRecord): string {
  return captureResourceId(
    session.subscriptionId,
    session.resourceGroup,
    session.watcherName,
    session.name,
  );
}

/** Azure's PacketCaptureResult. */
export function packetCaptureView(session: SessionRecord): Record<string, unknown> {
  return {
    name: session.name,
    id: captureIdOf(session),
    etag: `W/"${session.etag}"`,
    type: 'Microsoft.Network/networkWatchers/packetCaptures',
    properties: {
      ...echoedProperties(session.properties),
      provisioningState: provisioningState(session),
      // wirewatch's: the agent leaves its own connections out of the capture (docs/agent.md)
      excludesOwnTraffic: excludesOwnTraffic(session),
    },
  };
}

/**
 * Azure's PacketCaptureQueryStatusResult plus wirewatch's fields. A session whose agent is not
 * connected reads Unknown with AgentStopped until the agent is back (its true state is not
 * known meanwhile).
 */
export function captureStatusView(
  session: SessionRecord,
  agentConnected: boolean,
): Record<string, unknown> {
  const active = session.status === 'NotStarted' || session.status === 'Running';
  const unreachable = active && !agentConnected;
  // Azure's PcError values only (an agent's InvalidFilter reads CaptureFailed); the detailed
  // codes are in packetCaptureErrorDetails.
  const codes = session.errors.map((e) => e.code);
  if (unreachable) codes.push('AgentStopped');
  const uploadError = session.upload?.state === 'Failed' ? session.upload.error : null;
  if (session.upload?.state === 'Failed') codes.push('StorageFailed');
  const errors = [...new Set(codes.map(toPcError))];
  return {
    name: session.name,
    id: captureIdOf(session),
    ...(session.captureStartTime
      ? { captureStartTime: session.captureStartTime.toISOString() }
      : {}),
    packetCaptureStatus: unreachable ? 'Unknown' : session.status,
    ...(session.stopReason ? { stopReason: session.stopReason } : {}),
    packetCaptureError: errors,
    // wirewatch's additions
    packetsCaptured: session.progress?.packets ?? 0,
    bytesCaptured: session.progress?.bytes ?? 0,
    packetsDropped: session.progress?.kernelDrops ?? 0,
    ...(session.progress ? { lastProgressTime: session.progress.at.toISOString() } : {}),
    ...(session.stopTime ? { captureStopTime: session.stopTime.toISOString() } : {}),
    ...(session.stopRequested ? { stopRequested: session.stopRequested } : {}),
    packetCaptureErrorDetails: [
      ...session.errors,
      ...(unreachable
        ? [{ code: 'AgentStopped', message: 'The agent running this capture is not connected' }]
        : []),
      ...(session.upload?.state === 'Failed'
        ? [
            {
              code: 'StorageFailed',
              message: uploadError?.message ?? 'The upload to the storage account failed',
            },
          ]
        : []),
    ],
    ...(session.upload ? { uploadState: session.upload.state, blobs: session.upload.blobs } : {}),
    agentConnectionState: agentConnected ? 'Connected' : 'Disconnected',
    files: session.files,
    excludesOwnTraffic: excludesOwnTraffic(session),
  };
}

/** One instance of a scale-set capture, with whether its agent is connected. */
export interface InstanceStatusInput extends InstanceSession {
  readonly connected: boolean;
}

/**
 * A scale-set capture's queryStatus: the parent's aggregate (status, stop reason, the instances'
 * errors) with their progress summed, Unknown only while no instance's agent is connected, plus
 * wirewatch's `instances`: each instance's own state, by instance id as a number.
 */
export function scaleSetStatusView(
  parent: SessionRecord,
  instances: readonly InstanceStatusInput[],
): Record<string, unknown> {
  const progress = summedProgress(instances.map((i) => i.session));
  const connected = instances.some((i) => i.connected);
  // The parent keeps the stop it was asked for (its stop reason); shown only while pending.
  const active = parent.status === 'NotStarted' || parent.status === 'Running';
  const stopRequested = active ? parent.stopRequested : null;
  return {
    ...captureStatusView({ ...parent, progress, stopRequested }, connected),
    instances: instances.map(instanceStatusView),
  };
}

function instanceStatusView(i: InstanceStatusInput): Record<string, unknown> {
  const s = i.session;
  const own = captureStatusView(s, i.connected);
  return {
    instanceId: i.instanceId,
    name: i.vmName,
    status: own['packetCaptureStatus'],
    ...(s.stopReason ? { stopReason: s.stopReason } : {}),
    errors: own['packetCaptureErrorDetails'],
    packets: s.progress?.packets ?? 0,
    bytes: s.progress?.bytes ?? 0,
    drops: s.progress?.kernelDrops ?? 0,
    files: s.files,
    blobs: s.upload?.blobs ?? [],
    ...(s.captureStartTime ? { captureStartTime: s.captureStartTime.toISOString() } : {}),
    ...(s.stopTime ? { captureStopTime: s.stopTime.toISOString() } : {}),
    agentConnectionState: own['agentConnectionState'],
  };
}

/** The agent leaves its own connections out unless the capture asked for them (includeOwnTraffic). */
function excludesOwnTraffic(session: SessionRecord): boolean {
  return !session.capture.includeOwnTraffic;
}

/** Azure's Common.NetworkWatcher. */
export function networkWatcherView(w: NetworkWatcherRecord): Record<string, unknown> {
  return {
    id: watcherResourceId(w.subscriptionId, w.resourceGroup, w.name),
    name: w.name,
    type: 'Microsoft.Network/networkWatchers',
    location: w.location,
    tags: w.tags,
    etag: `W/"${w.etag}"`,
    properties: { provisioningState: 'Succeeded' },
  };
}

/** A VM as Microsoft.Compute shows it, with the agent's state under `properties.agent`. */
export function virtualMachineView(vm: VmRecord, connected: boolean): Record<string, unknown> {
  return {
    id: hostResourceId(vm),
    name: vm.name,
    type: 'Microsoft.Compute/virtualMachines',
    location: vm.location,
    properties: {
      vmId: vm.id,
      provisioningState: 'Succeeded',
      agent: agentState(vm, connected),
    },
  };
}

/**
 * A scale set as Microsoft.Compute shows it (VirtualMachineScaleSet): `sku.capacity` is its
 * number of instances; its model (image, size, profile) is the hosts' own and not shown.
 */
export function scaleSetView(scaleSet: ScaleSet): Record<string, unknown> {
  const created = Math.min(...scaleSet.instances.map((vm) => vm.createdAt.getTime()));
  return {
    id: scaleSetResourceId(scaleSet.subscriptionId, scaleSet.resourceGroup, scaleSet.name),
    name: scaleSet.name,
    type: 'Microsoft.Compute/virtualMachineScaleSets',
    location: scaleSet.location,
    sku: { capacity: scaleSet.instances.length },
    properties: {
      provisioningState: 'Succeeded',
      orchestrationMode: 'Uniform',
      timeCreated: new Date(created).toISOString(),
    },
  };
}

/**
 * A scale-set instance as Microsoft.Compute shows it (VirtualMachineScaleSetVM): `instanceId`,
 * the name `{scaleSet}_{instanceId}`, and the agent's state under `properties.agent` as for a VM.
 */
export function scaleSetVmView(vm: VmRecord, connected: boolean): Record<string, unknown> {
  return {
    id: hostResourceId(vm),
    name: vm.name,
    type: 'Microsoft.Compute/virtualMachineScaleSets/virtualMachines',
    location: vm.location,
    instanceId: vm.instanceId,
    properties: {
      vmId: vm.id,
      provisioningState: 'Succeeded',
      agent: agentState(vm, connected),
    },
  };
}

function agentState(vm: VmRecord, connected: boolean) {
  return {
    connectionState: connected ? 'Connected' : 'Disconnected',
    lastSeen: connected ? new Date().toISOString() : (vm.lastSeenAt?.toISOString() ?? null),
    hostname: vm.hostname,
    captureRoot: vm.captureRoot,
    enrolledAt: vm.createdAt.toISOString(),
  };
}

/** One entry of `GET /api/v1/subscriptions/{s}/agents`. */
export function agentView(vm: VmRecord, connected: boolean): Record<string, unknown> {
  return {
    id: hostResourceId(vm),
    vmId: vm.id,
    name: vm.name,
    resourceGroup: vm.resourceGroup,
    location: vm.location,
    ...(vm.scaleSet === null ? {} : { scaleSet: vm.scaleSet, instanceId: vm.instanceId }),
    ...agentState(vm, connected),
  };
}

/** The native id of an enrollment token (the audit log's resourceId). */
export function enrollmentTokenId(token: EnrollmentTokenRecord): string {
  return `/subscriptions/${token.subscriptionId}/enrollmentTokens/${token.id}`;
}

/** An enrollment token as the native API lists it (never the token or its hash). */
export function enrollmentTokenView(
  token: EnrollmentTokenRecord,
  now = new Date(),
): Record<string, unknown> {
  const state = token.revokedAt
    ? 'Revoked'
    : token.usedAt || (token.maxUses !== null && token.uses >= token.maxUses)
      ? 'Used'
      : token.expiresAt.getTime() <= now.getTime()
        ? 'Expired'
        : 'Active';
  return {
    tokenId: token.id,
    subscriptionId: token.subscriptionId,
    state,
    createdAt: token.createdAt.toISOString(),
    expiresAt: token.expiresAt.toISOString(),
    revokedAt: token.revokedAt?.toISOString() ?? null,
    takeover: token.takeover && {
      resourceGroup: token.takeover.resourceGroup,
      name: token.takeover.name,
    },
    usedAt: token.usedAt?.toISOString() ?? null,
    maxUses: token.maxUses,
    uses: token.uses,
  };
}
