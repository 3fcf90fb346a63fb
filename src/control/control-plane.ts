import { randomUUID } from 'node:crypto';
import type {
  AgentMessage,
  CaptureAssignment,
  ObservedSession,
  ServerMessage,
  StopRequestReason,
} from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import type {
  NetworkWatcherRecord,
  OperationKind,
  OperationRecord,
  SessionError,
  SessionPatch,
  SessionProgress,
  SessionRecord,
  SessionStatus,
  SessionStopReason,
  Store,
  VmRecord,
} from '../store/store.js';
import {
  canonicalJson,
  checkCaptureFilePath,
  parseCaptureBody,
  type PacketCaptureBody,
} from './capture-parameters.js';
import { captureResourceId, vmResourceId, watcherResourceId } from './resource-ids.js';

/** How the control plane reaches agents; the server's agent hub implements it. */
export interface AgentLink {
  isConnected(vmId: string): boolean;
  /** Sends if the agent is connected; false when it is not. */
  send(vmId: string, message: ServerMessage): boolean;
}

/** Who asked, for the audit log. */
export interface Caller {
  /** `admin`, `token:<id>` or `agent:<id>`. */
  readonly actor: string;
  readonly sourceIp: string;
}

export interface ControlPlaneOptions {
  readonly store: Store;
  readonly agents: AgentLink;
  /** Sessions NotStarted or Running per (subscription, location); default 10,000. */
  readonly quota?: number;
  readonly now?: () => Date;
  /** How long past its deadline a running capture may go before the server stops it. */
  readonly deadlineGraceMs?: number;
  /** How often live progress is written to the store (it is always served from memory). */
  readonly progressPersistMs?: number;
  readonly log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: object) => void;
}

export interface CaptureRef {
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  readonly watcherName: string;
  readonly name: string;
}

export const DEFAULT_QUOTA = 10_000;
const ACTIVE: readonly SessionStatus[] = ['NotStarted', 'Running'];

export function isActive(status: SessionStatus): boolean {
  return status === 'NotStarted' || status === 'Running';
}

/**
 * The control plane's domain logic: the capture lifecycle, quota, targets, reconciliation with
 * agents, long-running operations and the deadline backstop. No HTTP and no SQL: routes call it,
 * it calls the Store and the AgentLink.
 */
export class ControlPlane {
  readonly store: Store;
  readonly #agents: AgentLink;
  readonly #quota: number;
  readonly #now: () => Date;
  readonly #graceMs: number;
  readonly #persistMs: number;
  readonly #log: NonNullable<ControlPlaneOptions['log']>;
  /** Live progress by session id; the store gets it every progressPersistMs and at the end. */
  readonly #progress = new Map<string, { progress: SessionProgress; persistedAt: number }>();

  constructor(options: ControlPlaneOptions) {
    this.store = options.store;
    this.#agents = options.agents;
    this.#quota = options.quota ?? DEFAULT_QUOTA;
    this.#now = options.now ?? (() => new Date());
    this.#graceMs = options.deadlineGraceMs ?? 30_000;
    this.#persistMs = options.progressPersistMs ?? 30_000;
    this.#log = options.log ?? (() => undefined);
  }

  get quota(): number {
    return this.#quota;
  }

  isAgentConnected(vmId: string): boolean {
    return this.#agents.isConnected(vmId);
  }

  // ---- packet captures -------------------------------------------------------------------

  async requireWatcher(
    subscriptionId: string,
    resourceGroup: string,
    watcherName: string,
  ): Promise<NetworkWatcherRecord> {
    const watcher = await this.store.getWatcher(subscriptionId, resourceGroup, watcherName);
    if (!watcher) {
      throw new WirewatchError(
        'ParentResourceNotFound',
        `Network watcher '${watcherName}' was not found in resource group '${resourceGroup}'`,
        { target: 'networkWatcherName' },
      );
    }
    return watcher;
  }

  /**
   * PUT of a packet capture. 'exists' is an idempotent re-PUT (same body); a different body
   * for an existing name is a 409.
   */
  async createCapture(
    ref: CaptureRef,
    body: PacketCaptureBody,
    caller: Caller,
  ): Promise<{ kind: 'created' | 'exists'; session: SessionRecord; operation?: OperationRecord }> {
    const watcher = await this.requireWatcher(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
    );
    const parsed = parseCaptureBody(body);
    const vm = await this.#findTargetVm(ref.subscriptionId, parsed.target);
    if (vm.location !== watcher.location) {
      throw new WirewatchError(
        'TargetNotInNetworkWatcherLocation',
        `properties.target: VM '${vm.name}' is in location '${vm.location}' but network watcher '${watcher.name}' is in '${watcher.location}'; use the network watcher of '${vm.location}'`,
        { target: 'properties.target' },
      );
    }
    const filePath = checkCaptureFilePath(
      parsed.requestedPath.path,
      parsed.requestedPath.field,
      vm.captureRoot,
    );
    const now = this.#now();
    const record: SessionRecord = {
      id: randomUUID(),
      subscriptionId: ref.subscriptionId,
      resourceGroup: watcher.resourceGroup,
      watcherName: watcher.name,
      name: ref.name,
      location: watcher.location,
      vmId: vm.id,
      properties: parsed.properties,
      status: 'NotStarted',
      stopReason: null,
      errors: [],
      captureStartTime: null,
      stopTime: null,
      progress: null,
      files: [filePath],
      stopRequested: null,
      deleteRequested: false,
      upload: null,
      etag: randomUUID(),
      createdAt: now,
      updatedAt: now,
    };
    const result = await this.store.createSession(record, this.#quota);
    switch (result.kind) {
      case 'quota-exceeded':
        throw new WirewatchError(
          'PacketCaptureQuotaExceeded',
          `Subscription '${ref.subscriptionId}' already has ${result.active} packet captures NotStarted or Running in location '${watcher.location}'; the limit is ${this.#quota}. Stop or delete some first.`,
        );
      case 'exists': {
        const same =
          canonicalJson(result.session.properties) === canonicalJson(parsed.properties) &&
          !result.session.deleteRequested;
        if (!same) {
          throw new WirewatchError(
            'PacketCaptureAlreadyExists',
            `Packet capture '${result.session.name}' already exists with different properties; delete it first or use another name`,
            { target: 'packetCaptureName' },
          );
        }
        return { kind: 'exists', session: result.session };
      }
      case 'created': {
        const operation = await this.#openOperation('create', result.session);
        await this.#audit(caller, 'packetCapture.create', result.session, {
          target: vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name),
          filePath,
        });
        this.#agents.send(vm.id, { type: 'start', assignment: assignmentOf(result.session) });
        await this.#settle(result.session.id);
        return { kind: 'created', session: result.session, operation };
      }
    }
  }

  async #findTargetVm(
    subscriptionId: string,
    target: { subscriptionId: string; resourceGroup: string; name: string },
  ): Promise<VmRecord> {
    // Another subscription's VM reads exactly like a VM that does not exist.
    const vm =
      target.subscriptionId.toLowerCase() === subscriptionId.toLowerCase()
        ? await this.store.getVm(subscriptionId, target.resourceGroup, target.name)
        : undefined;
    if (!vm) {
      throw new WirewatchError(
        'InvalidTarget',
        `properties.target: no virtual machine '${target.name}' with a registered agent exists in resource group '${target.resourceGroup}' of this subscription`,
        { target: 'properties.target' },
      );
    }
    return vm;
  }

  async getCapture(ref: CaptureRef): Promise<SessionRecord> {
    const session = await this.store.getSession(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
      ref.name,
    );
    if (!session) throw notFound(ref);
    return this.withLiveProgress(session);
  }

  withLiveProgress(session: SessionRecord): SessionRecord {
    const live = this.#progress.get(session.id);
    return live ? { ...session, progress: live.progress } : session;
  }

  /** POST …/stop: undefined operation when the capture had already ended (200). */
  async stopCapture(
    ref: CaptureRef,
    caller: Caller,
  ): Promise<{ session: SessionRecord; operation?: OperationRecord }> {
    const session = await this.getCapture(ref);
    await this.#audit(caller, 'packetCapture.stop', session, { status: session.status });
    if (!isActive(session.status)) return { session };
    return this.#requestStop(session, 'ManualIntervention', 'stop');
  }

  /** DELETE: 'gone' when there was nothing (204), 'deleted' when removed at once (204). */
  async deleteCapture(
    ref: CaptureRef,
    caller: Caller,
  ): Promise<{ kind: 'gone' | 'deleted' } | { kind: 'pending'; operation: OperationRecord }> {
    const session = await this.store.getSession(
      ref.subscriptionId,
      ref.resourceGroup,
      ref.watcherName,
      ref.name,
    );
    if (!session) return { kind: 'gone' };
    await this.#audit(caller, 'packetCapture.delete', session, { status: session.status });
    if (!isActive(session.status)) {
      await this.#forget(session.id);
      return { kind: 'deleted' };
    }
    await this.store.updateSession(session.id, { deleteRequested: true });
    const { operation } = await this.#requestStop(session, 'ManualIntervention', 'delete');
    return { kind: 'pending', operation: operation! };
  }

  async #requestStop(
    session: SessionRecord,
    reason: StopRequestReason,
    kind: OperationKind,
  ): Promise<{ session: SessionRecord; operation?: OperationRecord }> {
    let updated: SessionRecord | undefined;
    if (session.status === 'NotStarted' && !this.#agents.isConnected(session.vmId)) {
      // The agent never got it: end it here. If the agent did start it after all, the next
      // hello reports it and reconciliation stops it.
      updated = await this.#finish(session, { stopReason: reason, status: 'Stopped' });
    } else {
      updated = await this.store.updateSession(session.id, { stopRequested: reason });
      this.#agents.send(session.vmId, { type: 'stop', sessionId: session.id, reason });
    }
    const operation = await this.#openOperation(kind, updated ?? session);
    await this.#settle(session.id);
    return { session: updated ?? session, operation };
  }

  // ---- agents -------------------------------------------------------------------------------

  /** Reconciles an agent's report with the desired state (kubelet-style) after it (re)connects. */
  async agentHello(vm: VmRecord, observed: readonly ObservedSession[]): Promise<void> {
    await this.store.touchVm(vm.id, this.#now());
    const seen = new Set<string>();
    for (const o of observed) {
      seen.add(o.sessionId);
      const session = await this.store.getSessionById(o.sessionId);
      if (!session || session.vmId !== vm.id) {
        // Not ours or long gone: make sure it stops, and let the agent forget it.
        if (o.state === 'Running') {
          this.#agents.send(vm.id, {
            type: 'stop',
            sessionId: o.sessionId,
            reason: 'ManualIntervention',
          });
        } else {
          this.#agents.send(vm.id, { type: 'ack', sessionId: o.sessionId });
        }
        continue;
      }
      if (o.state === 'Stopped') {
        await this.agentMessage(vm, {
          type: 'stopped',
          sessionId: o.sessionId,
          stopReason: o.stopReason ?? 'Error',
          ...(o.startTime === undefined ? {} : { startTime: o.startTime }),
          stopTime: o.stopTime ?? this.#now().toISOString(),
          progress: o.progress ?? {
            packets: 0,
            bytes: 0,
            kernelDrops: 0,
            at: this.#now().toISOString(),
          },
          ...(o.error === undefined ? {} : { error: o.error }),
          files: o.files ?? [],
        });
        continue;
      }
      // Running on the agent.
      if (!isActive(session.status) || session.stopRequested) {
        this.#agents.send(vm.id, {
          type: 'stop',
          sessionId: o.sessionId,
          reason: toRequestReason(session.stopRequested ?? session.stopReason),
        });
      }
      if (session.status === 'NotStarted') {
        await this.store.updateSession(session.id, {
          status: 'Running',
          captureStartTime: o.startTime ? new Date(o.startTime) : this.#now(),
        });
      }
      if (o.progress) this.#noteProgress(session.id, o.progress);
      await this.#settle(session.id);
    }
    for (const session of await this.store.listSessionsByVm(vm.id, ACTIVE)) {
      if (seen.has(session.id)) continue;
      if (session.status === 'Running') {
        // The agent lost it (its data dir went away): what it captured is not reachable.
        await this.#finish(session, {
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
        await this.#finish(session, { status: 'Stopped', stopReason: session.stopRequested });
      } else {
        this.#agents.send(vm.id, { type: 'start', assignment: assignmentOf(session) });
      }
      await this.#settle(session.id);
    }
  }

  /** One message from an agent, after hello. The agent may only speak of its own sessions. */
  async agentMessage(vm: VmRecord, message: AgentMessage): Promise<void> {
    if (message.type === 'hello') {
      await this.agentHello(vm, message.sessions);
      return;
    }
    // File transfers are the agent hub's business (downloads), not the lifecycle's.
    if (message.type === 'readFileEnd') return;
    const session = await this.store.getSessionById(message.sessionId);
    if (!session || session.vmId !== vm.id) {
      if (!session && message.type === 'stopped') {
        this.#agents.send(vm.id, { type: 'ack', sessionId: message.sessionId });
      } else if (session) {
        this.#log('warn', 'agent spoke of a session of another VM; ignored', {
          agentId: vm.id,
          sessionId: message.sessionId,
        });
      }
      return;
    }
    switch (message.type) {
      case 'started':
        if (session.status === 'NotStarted') {
          await this.store.updateSession(session.id, {
            status: 'Running',
            captureStartTime: new Date(message.startTime),
          });
        }
        if (session.stopRequested) {
          this.#agents.send(vm.id, {
            type: 'stop',
            sessionId: session.id,
            reason: toRequestReason(session.stopRequested),
          });
        }
        break;
      case 'progress':
        this.#noteProgress(session.id, message.progress);
        if (this.#shouldPersist(session.id)) {
          await this.store.updateSession(session.id, {
            progress: this.#progress.get(session.id)!.progress,
          });
        }
        break;
      case 'stopped': {
        const progress = toProgress(message.progress);
        this.#progress.delete(session.id);
        const patch: SessionPatch = {
          progress,
          files: message.files.length > 0 ? message.files : session.files,
          stopTime: new Date(message.stopTime),
          ...(message.startTime && !session.captureStartTime
            ? { captureStartTime: new Date(message.startTime) }
            : {}),
        };
        if (isActive(session.status)) {
          const failed = message.stopReason === 'Error';
          await this.store.updateSession(session.id, {
            ...patch,
            status: failed ? 'Error' : 'Stopped',
            stopReason: message.stopReason,
            errors: message.error
              ? [{ code: message.error.code, message: message.error.message }]
              : [],
            stopRequested: null,
          });
        } else {
          // Already ended by the server (VM deleted, never started): keep its verdict, take the figures.
          await this.store.updateSession(session.id, patch);
        }
        this.#agents.send(vm.id, { type: 'ack', sessionId: session.id });
        break;
      }
    }
    await this.#settle(session.id);
  }

  /**
   * Deletes a VM (deregisters its agent): its running captures end with TargetDeleted, its
   * credential stops working, and the agent is told to stop and forget its enrollment.
   */
  async deleteVm(vm: VmRecord, caller: Caller): Promise<void> {
    for (const session of await this.store.listSessionsByVm(vm.id, ACTIVE)) {
      await this.#finish(session, { status: 'Stopped', stopReason: 'TargetDeleted' });
      await this.#settle(session.id);
    }
    this.#agents.send(vm.id, { type: 'deregistered' });
    await this.store.deleteVm(vm.id);
    await this.store.appendAudit({
      id: randomUUID(),
      subscriptionId: vm.subscriptionId,
      at: this.#now(),
      actor: caller.actor,
      action: 'virtualMachine.delete',
      resourceId: vmResourceId(vm.subscriptionId, vm.resourceGroup, vm.name),
      sourceIp: caller.sourceIp,
      detail: {},
    });
  }

  /**
   * The server's backstop for deadlines: a capture still running well past its time limit
   * (the agent enforces it; this catches an agent that did not) is told to stop.
   */
  async sweepDeadlines(): Promise<number> {
    const now = this.#now().getTime();
    let stopped = 0;
    for (const session of await this.store.listSessionsByStatus(['Running'])) {
      if (session.stopRequested || !session.captureStartTime) continue;
      const limitS = timeLimitOf(session);
      if (now <= session.captureStartTime.getTime() + limitS * 1000 + this.#graceMs) continue;
      if (!this.#agents.isConnected(session.vmId)) continue;
      await this.store.updateSession(session.id, { stopRequested: 'TimeExceeded' });
      this.#agents.send(session.vmId, {
        type: 'stop',
        sessionId: session.id,
        reason: 'TimeExceeded',
      });
      stopped += 1;
    }
    return stopped;
  }

  // ---- operations ---------------------------------------------------------------------------

  async #openOperation(kind: OperationKind, session: SessionRecord): Promise<OperationRecord> {
    const now = this.#now();
    const operation: OperationRecord = {
      id: randomUUID(),
      subscriptionId: session.subscriptionId,
      location: session.location,
      kind,
      sessionId: session.id,
      resourceId: captureResourceId(
        session.subscriptionId,
        session.resourceGroup,
        session.watcherName,
        session.name,
      ),
      status: 'InProgress',
      error: null,
      createdAt: now,
      updatedAt: now,
    };
    await this.store.createOperation(operation);
    return operation;
  }

  /** An operation that is complete as soon as it exists (watcher delete). */
  async completedOperation(
    kind: OperationKind,
    subscriptionId: string,
    location: string,
    resourceId: string,
  ): Promise<OperationRecord> {
    const now = this.#now();
    const operation: OperationRecord = {
      id: randomUUID(),
      subscriptionId,
      location,
      kind,
      sessionId: '',
      resourceId,
      status: 'Succeeded',
      error: null,
      createdAt: now,
      updatedAt: now,
    };
    await this.store.createOperation(operation);
    return operation;
  }

  /**
   * Completes every open operation of a session that its state now satisfies. Idempotent, and
   * called after every change, so an operation opened just after the change it waits for still
   * completes.
   */
  async #settle(sessionId: string): Promise<void> {
    const operations = await this.store.listOpenOperations(sessionId);
    if (operations.length === 0) return;
    const session = await this.store.getSessionById(sessionId);
    let deleted = false;
    for (const op of operations) {
      if (!session) {
        await this.store.updateOperation(op.id, { status: 'Succeeded' });
        continue;
      }
      const ended = !isActive(session.status);
      switch (op.kind) {
        case 'create':
          if (
            session.status === 'Error' ||
            (ended && session.errors.length > 0 && !session.captureStartTime)
          ) {
            await this.store.updateOperation(op.id, {
              status: 'Failed',
              error: session.errors[0] ?? { code: 'CaptureFailed', message: 'The capture failed' },
            });
          } else if (session.status !== 'NotStarted') {
            await this.store.updateOperation(op.id, { status: 'Succeeded' });
          }
          break;
        case 'stop':
          if (ended) await this.store.updateOperation(op.id, { status: 'Succeeded' });
          break;
        case 'delete':
          if (ended) {
            if (!deleted) await this.#forget(session.id);
            deleted = true;
            await this.store.updateOperation(op.id, { status: 'Succeeded' });
          }
          break;
      }
    }
    if (session && session.deleteRequested && !isActive(session.status) && !deleted) {
      await this.#forget(session.id);
    }
  }

  async #forget(sessionId: string): Promise<void> {
    this.#progress.delete(sessionId);
    await this.store.deleteSession(sessionId);
  }

  async #finish(
    session: SessionRecord,
    patch: { status: SessionStatus; stopReason: SessionStopReason; errors?: SessionError[] },
  ): Promise<SessionRecord | undefined> {
    const live = this.#progress.get(session.id);
    this.#progress.delete(session.id);
    return this.store.updateSession(session.id, {
      status: patch.status,
      stopReason: patch.stopReason,
      errors: patch.errors ?? [],
      stopTime: this.#now(),
      stopRequested: null,
      ...(live ? { progress: live.progress } : {}),
    });
  }

  #noteProgress(
    sessionId: string,
    progress: { packets: number; bytes: number; kernelDrops: number; at: string },
  ) {
    const previous = this.#progress.get(sessionId);
    this.#progress.set(sessionId, {
      progress: toProgress(progress),
      persistedAt: previous?.persistedAt ?? 0,
    });
  }

  #shouldPersist(sessionId: string): boolean {
    const entry = this.#progress.get(sessionId);
    if (!entry) return false;
    const now = this.#now().getTime();
    if (now - entry.persistedAt < this.#persistMs) return false;
    entry.persistedAt = now;
    return true;
  }

  async #audit(
    caller: Caller,
    action: string,
    session: SessionRecord,
    detail: Record<string, unknown>,
  ): Promise<void> {
    await this.store.appendAudit({
      id: randomUUID(),
      subscriptionId: session.subscriptionId,
      at: this.#now(),
      actor: caller.actor,
      action,
      resourceId: captureResourceId(
        session.subscriptionId,
        session.resourceGroup,
        session.watcherName,
        session.name,
      ),
      sourceIp: caller.sourceIp,
      detail,
    });
  }

  /** Creates `NetworkWatcher_{location}` in `NetworkWatcherRG` unless the subscription has one there. */
  async ensureWatcherFor(subscriptionId: string, location: string): Promise<void> {
    if (await this.store.findWatcherByLocation(subscriptionId, location)) return;
    await this.store.putWatcher({
      subscriptionId,
      resourceGroup: 'NetworkWatcherRG',
      name: `NetworkWatcher_${location}`,
      location,
      tags: {},
      etag: randomUUID(),
      createdAt: this.#now(),
    });
  }

  watcherId(w: NetworkWatcherRecord): string {
    return watcherResourceId(w.subscriptionId, w.resourceGroup, w.name);
  }
}

function notFound(ref: CaptureRef): WirewatchError {
  return new WirewatchError(
    'ResourceNotFound',
    `Packet capture '${ref.name}' was not found under network watcher '${ref.watcherName}' in resource group '${ref.resourceGroup}'`,
    { target: 'packetCaptureName' },
  );
}

function toProgress(p: {
  packets: number;
  bytes: number;
  kernelDrops: number;
  at: string;
}): SessionProgress {
  return { packets: p.packets, bytes: p.bytes, kernelDrops: p.kernelDrops, at: new Date(p.at) };
}

function toRequestReason(reason: SessionStopReason | null): StopRequestReason {
  return reason === 'TargetDeleted' || reason === 'TimeExceeded' ? reason : 'ManualIntervention';
}

function timeLimitOf(session: SessionRecord): number {
  const p = session.properties as {
    timeLimitInSeconds?: number;
    continuousCapture?: boolean;
    captureSettings?: { sessionTimeLimitInSeconds?: number };
  };
  if (p.continuousCapture === true) {
    const s = p.captureSettings?.sessionTimeLimitInSeconds ?? 86400;
    return s === 0 ? 604800 : s;
  }
  const t = p.timeLimitInSeconds ?? 18000;
  return t === 0 ? 18000 : t;
}

/** What the agent is told to run; limits resolved from the stored properties. */
export function assignmentOf(session: SessionRecord): CaptureAssignment {
  const p = session.properties as unknown as PacketCaptureBody['properties'];
  const parsed = parseCaptureBody({ properties: p });
  return {
    sessionId: session.id,
    resourceId: captureResourceId(
      session.subscriptionId,
      session.resourceGroup,
      session.watcherName,
      session.name,
    ),
    filePath: session.files[0] ?? parsed.requestedPath.path,
    filters: parsed.filters,
    ...parsed.limits,
    createdAt: session.createdAt.toISOString(),
  };
}
