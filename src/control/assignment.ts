import type { CaptureAssignment } from '../model/channel.js';
import type { SessionRecord, VmRecord } from '../store/store.js';
import type { BlobGrants } from './blob-grants.js';
import type { ControlContext } from './control-context.js';
import { sessionResourceId } from './resource-ids.js';
import { plannedCapturePath } from './session-files.js';

/**
 * What the agent is told to run: the resolved capture (session.capture), the file where the plan
 * puts it under the VM's capture root.
 */
export function assignmentOf(session: SessionRecord, captureRoot: string): CaptureAssignment {
  const { filters, limits, ring, includeOwnTraffic } = session.capture;
  return {
    sessionId: session.id,
    resourceId: sessionResourceId(session),
    filePath: plannedCapturePath(session, captureRoot),
    filters: [...filters],
    ...limits,
    continuousCapture: ring !== undefined,
    ...(ring === undefined ? {} : { captureSettings: ring }),
    createdAt: session.createdAt.toISOString(),
    ...(includeOwnTraffic ? { includeOwnTraffic: true } : {}),
  };
}

/** Sends a session's start to its agent, if connected, with a fresh blob SAS if it has a blob. */
export async function sendStart(
  ctx: ControlContext,
  grants: BlobGrants,
  session: SessionRecord,
  vm: VmRecord,
): Promise<void> {
  if (!ctx.agents.isConnected(session.vmId)) return;
  let assignment = assignmentOf(session, vm.captureRoot);
  try {
    const blob = await grants.target(session);
    if (blob) assignment = { ...assignment, blob };
  } catch (err) {
    ctx.log('error', 'could not mint the blob SAS; the capture stays local', {
      sessionId: session.id,
      err: err instanceof Error ? err.message : String(err),
    });
  }
  ctx.agents.send(session.vmId, { type: 'start', assignment });
}
