/**
 * A scale-set capture's instances as the download and live-stream routes read them: the parent
 * session (the ARM resource) has one child session per instance (src/control/
 * scale-set-captures.ts), each an ordinary capture of that instance's VM.
 */
import type { ControlPlane, InstanceSession } from '../../control/control-plane.js';
import { WirewatchError } from '../../model/errors.js';
import type { SessionRecord } from '../../store/store.js';
import {
  sessionSource,
  type ContentSource,
  type SourceContext,
} from './capture-content-sources.js';

/** Whether the session is a scale-set capture's parent (a child is a capture of one VM). */
export function isScaleSetCapture(session: SessionRecord): boolean {
  return session.parentId === null && session.properties.targetType === 'AzureVMSS';
}

/** One instance's files for a download: `host` is its VM name, `{ss}_{id}`. */
export interface InstanceContent {
  readonly instanceId: string;
  readonly host: string;
  readonly source: ContentSource;
}

/** What a scale-set download reads. */
export interface InstancesContent {
  /** The instances with files, by instance id as a number. */
  readonly parts: readonly InstanceContent[];
  /** The instances without a file (never started, or ended before writing one). */
  readonly skipped: readonly string[];
}

/**
 * The instances' files: from blob when the instance's upload completed, else from its agent.
 *
 * @throws WirewatchError `AgentNotConnected` naming the instance whose files are only on its
 *   VM while its agent is away (the merged file would otherwise lack it without saying so).
 */
export async function instancesContent(
  parent: SessionRecord,
  ctx: SourceContext,
): Promise<InstancesContent> {
  const instances = await ctx.control.instanceSessions(parent);
  const withFiles = instances.filter((i) => hasFiles(i.session));
  const parts: InstanceContent[] = [];
  for (const instance of withFiles) {
    // One file per instance is open at a time: the agents' windows shrink with the instances.
    const source = await sessionSource(instance.session, ctx, withFiles.length).catch(
      (err: unknown) => {
        throw instanceError(err, instance);
      },
    );
    parts.push({ instanceId: instance.instanceId, host: instance.vmName, source });
  }
  return {
    parts,
    skipped: instances.filter((i) => !hasFiles(i.session)).map((i) => i.instanceId),
  };
}

/** The instances of a running scale-set capture whose child runs now. */
export async function runningInstances(
  parent: SessionRecord,
  control: ControlPlane,
): Promise<InstanceSession[]> {
  return (await control.instanceSessions(parent)).filter((i) => i.session.status === 'Running');
}

function hasFiles(session: SessionRecord): boolean {
  const upload = session.upload;
  return session.files.length > 0 || (upload?.state === 'Completed' && upload.blobs.length > 0);
}

function instanceError(err: unknown, instance: InstanceSession): unknown {
  if (!(err instanceof WirewatchError) || err.code !== 'AgentNotConnected') return err;
  return new WirewatchError(
    'AgentNotConnected',
    `Instance ${instance.instanceId} (${instance.vmName}) holds its part of the capture only on its VM, and its agent is not connected; retry when it is`,
    { cause: err },
  );
}
