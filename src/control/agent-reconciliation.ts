import type { AgentMessage, ObservedSession } from '../model/channel.js';
import type { SessionPatch, SessionRecord, VmRecord } from '../store/store.js';
import { sendStart } from './assignment.js';
import { appendAudit } from './audit.js';
import type { BlobGrants } from './blob-grants.js';
import type { Caller, ControlContext } from './control-context.js';
import { stopTimeOf } from './deadlines.js';
import { toProgress } from './live-progress.js';
import type { CaptureOperations } from './operations.js';
import { hostResourceId } from './resource-ids.js';
import type { ScaleSetCaptures } from './scale-set-captures.js';
import {
  ACTIVE,
  finishSession,
  isActive,
  toRequestReason,
  type SessionMemory,
} from './session-end.js';
import { acceptReportedFiles, plannedCapturePath } from './session-files.js';
import type { UploadChecks } from './upload-checks.js';

/** How long one slice of a `hello` reconciliation may run before it yields to the event loop. */
const HELLO_SLICE_MS = 10;

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface AgentReconcilerOptions {
  readonly memory: SessionMemory;
  readonly operations: CaptureOperations;
  readonly grants: BlobGrants;
  readonly uploads: UploadChecks;
  readonly scaleSets: ScaleSetCaptures;
}

/**
 * The agents' side of the lifecycle: what an agent reports (its `hello`, then each message) is
 * reconciled with the desired state in the store, kubelet-style; and a VM's deregistration.
 */
export class AgentReconciler {
  readonly #ctx: ControlContext;
  readonly #memory: SessionMemory;
  readonly #operations: CaptureOperations;
  readonly #grants: BlobGrants;
  readonly #uploads: UploadChecks;
  readonly #scaleSets: ScaleSetCaptures;

  constructor(ctx: ControlContext, options: AgentReconcilerOptions) {
    this.#ctx = ctx;
    this.#memory = options.memory;
    this.#operations = options.operations;
    this.#grants = options.grants;
    this.#uploads = options.uploads;
    this.#scaleSets = options.scaleSets;
  }

  /** The agent's channel closed: its VM was last seen now. */
  async seen(vmId: string): Promise<void> {
    await this.#ctx.store.touchVm(vmId, this.#ctx.now());
  }

  /**
   * Reconciles an agent's report with the desired state (kubelet-style) after it (re)connects.
   * A large report is worked through in slices that yield to the event loop, so one agent's
   * `hello` never holds up the server (other agents, the API) for long.
   */
  async hello(vm: VmRecord, observed: readonly ObservedSession[]): Promise<void> {
    const { store } = this.#ctx;
    await store.touchVm(vm.id, this.#ctx.now());
    const seen = new Set<string>();
    let sliceStart = performance.now();
    for (const o of observed) {
      if (performance.now() - sliceStart > HELLO_SLICE_MS) {
        await yieldToEventLoop();
        sliceStart = performance.now();
      }
      seen.add(o.sessionId);
      await this.#reconcileObserved(vm, o);
    }
    for (const session of await store.listSessionsByVm(vm.id, ACTIVE)) {
      if (performance.now() - sliceStart > HELLO_SLICE_MS) {
        await yieldToEventLoop();
        sliceStart = performance.now();
      }
      if (seen.has(session.id)) continue;
      if (session.status === 'Running') {
        // The agent lost it (its data dir went away): what it captured is not reachable.
        await finishSession(this.#ctx, this.#memory, session, {
          status: 'Stopped',
          stopReason: 'AgentRestarted',
          errors: [
            {
              code: 'AgentStopped',
              message: 'The agent restarted without a record of this capture',
            },
          ],
        });
      } else if (session.stopRequested) {
        await finishSession(this.#ctx, this.#memory, session, {
          status: 'Stopped',
          stopReason: session.stopRequested,
        });
      } else {
        await sendStart(this.#ctx, this.#grants, session, vm);
      }
      await this.#operations.settle(session.id);
    }
    // A scale-set instance joins the live captures of its set that admit it (late joiners).
    await this.#scaleSets.admit(vm);
  }

  /** One session of a `hello`. */
  async #reconcileObserved(vm: VmRecord, o: ObservedSession): Promise<void> {
    const { store, agents, log } = this.#ctx;
    const session = await store.getSessionById(o.sessionId);
    if (!session || session.vmId !== vm.id) {
      if (session) {
        log('warn', 'agent reported a session of another VM; ignored', {
          agentId: vm.id,
          sessionId: o.sessionId,
        });
      }
      // Not ours or long gone: make sure it stops, and let the agent forget it. Another VM's
      // session is left alone on the server; the agent only learns it has nothing to do.
      if (o.state === 'Running') {
        agents.send(vm.id, {
          type: 'stop',
          sessionId: o.sessionId,
          reason: 'ManualIntervention',
        });
      } else {
        agents.send(vm.id, { type: 'ack', sessionId: o.sessionId });
      }
      return;
    }
    if (o.state === 'Stopped') {
      await this.#recordStopped(vm, session, {
        stopReason: o.stopReason ?? 'Error',
        ...(o.startTime === undefined ? {} : { startTime: o.startTime }),
        stopTime: o.stopTime ?? this.#ctx.now().toISOString(),
        progress: o.progress ?? {
          packets: 0,
          bytes: 0,
          kernelDrops: 0,
          at: this.#ctx.now().toISOString(),
        },
        ...(o.error === undefined ? {} : { error: o.error }),
        files: o.files ?? [],
      });
      const upload = o.upload ? await this.#uploads.record(vm, session, o.upload) : 'recorded';
      // Unacknowledged, the agent keeps the session and reports it again.
      if (upload === 'recorded') agents.send(vm.id, { type: 'ack', sessionId: session.id });
      await this.#operations.settle(session.id);
      return;
    }
    if (o.upload) await this.#uploads.record(vm, session, o.upload);
    // Running on the agent.
    if (!isActive(session.status) || session.stopRequested) {
      agents.send(vm.id, {
        type: 'stop',
        sessionId: o.sessionId,
        reason: toRequestReason(session.stopRequested ?? session.stopReason),
      });
    }
    let startTime = session.captureStartTime;
    if (session.status === 'NotStarted') {
      startTime = o.startTime ? new Date(o.startTime) : this.#ctx.now();
      await store.updateSession(session.id, {
        status: 'Running',
        captureStartTime: startTime,
        ...startedFiles(session, vm.captureRoot),
      });
    }
    if (isActive(session.status) && startTime) this.#memory.deadlines.note(session, startTime);
    if (o.progress) this.#memory.progress.note(session.id, vm.id, o.progress);
    await this.#operations.settle(session.id);
  }

  /**
   * A session's end as its agent reports it (`stopped`, or Stopped in `hello`). Of the files,
   * only those named as the session's plan names them are kept (acceptReportedFiles).
   */
  async #recordStopped(
    vm: VmRecord,
    session: SessionRecord,
    message: Omit<Extract<AgentMessage, { type: 'stopped' }>, 'type' | 'sessionId'>,
  ): Promise<void> {
    const { store, log } = this.#ctx;
    const progress = toProgress(message.progress);
    this.#memory.progress.take(session.id);
    this.#memory.deadlines.forget(session.id);
    let files: string[] = [];
    try {
      const accepted = acceptReportedFiles(
        message.files,
        plannedCapturePath(session, vm.captureRoot),
        vm.captureRoot,
        session.capture.ring !== undefined,
      );
      files = accepted.files;
      if (accepted.refused.length > 0) {
        log('warn', "agent reported files that are not its session's; ignored", {
          agentId: vm.id,
          sessionId: session.id,
          refused: accepted.refused.slice(0, 5).map((f) => f.slice(0, 256)),
        });
      }
    } catch (err) {
      // The VM's capture root changed since the capture was created: keep no file.
      log('warn', 'cannot match the files an agent reported', {
        sessionId: session.id,
        err: err instanceof Error ? err.message : String(err),
      });
    }
    const patch: SessionPatch = {
      progress,
      ...(files.length > 0 || session.files.length === 0 ? { files } : {}),
      stopTime: stopTimeOf(
        session,
        message.stopReason,
        new Date(message.stopTime),
        session.captureStartTime ?? (message.startTime ? new Date(message.startTime) : null),
      ),
      ...(message.startTime && !session.captureStartTime
        ? { captureStartTime: new Date(message.startTime) }
        : {}),
    };
    if (isActive(session.status)) {
      const failed = message.stopReason === 'Error';
      await store.updateSession(session.id, {
        ...patch,
        status: failed ? 'Error' : 'Stopped',
        stopReason: message.stopReason,
        errors: message.error ? [{ code: message.error.code, message: message.error.message }] : [],
        stopRequested: null,
      });
    } else {
      // Already ended by the server (VM deleted, never started): keep its verdict, take the figures.
      await store.updateSession(session.id, patch);
    }
  }

  /** One message from an agent, after hello. The agent may only speak of its own sessions. */
  async message(vm: VmRecord, message: AgentMessage): Promise<void> {
    const { store, agents, log } = this.#ctx;
    if (message.type === 'hello') {
      await this.hello(vm, message.sessions);
      return;
    }
    // File transfers and live streams are the agent hub's business, not the lifecycle's.
    if (
      message.type === 'readFileEnd' ||
      message.type === 'streamStats' ||
      message.type === 'streamEnd'
    ) {
      return;
    }
    // Progress is the bulk of the traffic (every agent, every session, every few seconds): for a
    // session already known to belong to this agent it touches only memory, and the store at
    // most every progressPersistMs. It cannot complete any operation, so nothing is settled.
    if (message.type === 'progress' && this.#memory.progress.isHeldFor(message.sessionId, vm.id)) {
      await this.#memory.progress.record(message.sessionId, vm.id, message.progress);
      return;
    }
    const session = await store.getSessionById(message.sessionId);
    if (!session || session.vmId !== vm.id) {
      if (!session && (message.type === 'stopped' || message.type === 'uploaded')) {
        agents.send(vm.id, { type: 'ack', sessionId: message.sessionId });
      } else if (session) {
        log('warn', 'agent spoke of a session of another VM; ignored', {
          agentId: vm.id,
          sessionId: message.sessionId,
        });
      }
      return;
    }
    switch (message.type) {
      case 'started':
        if (session.status === 'NotStarted') {
          await store.updateSession(session.id, {
            status: 'Running',
            captureStartTime: new Date(message.startTime),
            ...startedFiles(session, vm.captureRoot),
          });
          this.#memory.deadlines.note(session, new Date(message.startTime));
        }
        if (session.stopRequested || !isActive(session.status)) {
          // Asked to stop meanwhile, or ended by the server (a start acknowledged too late).
          agents.send(vm.id, {
            type: 'stop',
            sessionId: session.id,
            reason: toRequestReason(session.stopRequested ?? session.stopReason),
          });
        }
        break;
      case 'progress':
        if (isActive(session.status)) {
          await this.#memory.progress.record(session.id, vm.id, message.progress);
        }
        return;
      case 'uploaded':
        if ((await this.#uploads.record(vm, session, message.upload)) === 'recorded') {
          agents.send(vm.id, { type: 'ack', sessionId: session.id });
        }
        break;
      case 'blobGrantRequest':
        await this.#grants.grantRingFile(vm, session, message.fileIndex);
        break;
      case 'stopped':
        await this.#recordStopped(vm, session, message);
        agents.send(vm.id, { type: 'ack', sessionId: session.id });
        break;
    }
    await this.#operations.settle(session.id);
  }

  /**
   * Deletes a VM (deregisters its agent): its running captures end with TargetDeleted, its
   * credential stops working, and the agent is told to stop and forget its enrollment.
   */
  async deleteVm(vm: VmRecord, caller: Caller): Promise<void> {
    const { store, agents } = this.#ctx;
    for (const session of await store.listSessionsByVm(vm.id, ACTIVE)) {
      await finishSession(this.#ctx, this.#memory, session, {
        status: 'Stopped',
        stopReason: 'TargetDeleted',
      });
      await this.#operations.settle(session.id);
    }
    agents.send(vm.id, { type: 'deregistered' });
    await store.deleteVm(vm.id);
    await appendAudit(this.#ctx, caller, {
      subscriptionId: vm.subscriptionId,
      action: 'virtualMachine.delete',
      resourceId: hostResourceId(vm),
      detail: {},
    });
  }
}

/**
 * The file a single-file session has once its agent says it started: the agent starts only after
 * it created the planned file itself (exclusively), so that file is the session's own. A ring's
 * files are recorded as the agent reports them at its end.
 */
function startedFiles(session: SessionRecord, captureRoot: string): { files?: string[] } {
  if (session.files.length > 0 || session.capture.ring !== undefined) return {};
  return { files: [plannedCapturePath(session, captureRoot)] };
}
