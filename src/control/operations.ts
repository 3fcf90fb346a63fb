import { randomUUID } from 'node:crypto';
import type {
  OperationKind,
  OperationRecord,
  SessionError,
  SessionRecord,
} from '../store/store.js';
import { WirewatchError } from '../model/errors.js';
import type { ControlContext } from './control-context.js';
import { sessionResourceId } from './resource-ids.js';
import { isScaleSetParent, refreshParent } from './scale-set-status.js';
import {
  finishSession,
  forgetSession,
  isActive,
  toRequestReason,
  type SessionMemory,
} from './session-end.js';

/**
 * Long-running operations: each create, stop and delete of a capture opens one; after every
 * change the session's open operations are settled against its state; each is due
 * operationTimeoutMs after it was asked for, when {@link CaptureOperations.sweep} ends it.
 */
export class CaptureOperations {
  readonly #ctx: ControlContext;
  readonly #memory: SessionMemory;
  readonly #timeoutMs: number;
  /**
   * When each open operation is due, by operation id: filled as operations open (and once from
   * the store, for those a previous server process opened), emptied as they complete.
   */
  readonly #due = new Map<string, { sessionId: string; dueMs: number }>();
  #loaded: Promise<void> | undefined;

  constructor(ctx: ControlContext, memory: SessionMemory, timeoutMs: number) {
    this.#ctx = ctx;
    this.#memory = memory;
    this.#timeoutMs = timeoutMs;
  }

  /** The operation of the subscription in the location; OperationNotFound when there is none. */
  async get(subscriptionId: string, location: string, id: string): Promise<OperationRecord> {
    const op = await this.#ctx.store.getOperation(subscriptionId, id);
    if (!op || op.location !== location.toLowerCase()) {
      throw new WirewatchError('OperationNotFound', `Operation '${id}' was not found`, {
        target: 'operationId',
      });
    }
    return op;
  }

  async open(kind: OperationKind, session: SessionRecord): Promise<OperationRecord> {
    const now = this.#ctx.now();
    const operation: OperationRecord = {
      id: randomUUID(),
      subscriptionId: session.subscriptionId,
      location: session.location,
      kind,
      sessionId: session.id,
      resourceId: sessionResourceId(session),
      status: 'InProgress',
      error: null,
      createdAt: now,
      updatedAt: now,
    };
    await this.#ctx.store.createOperation(operation);
    this.#due.set(operation.id, {
      sessionId: session.id,
      dueMs: now.getTime() + this.#timeoutMs,
    });
    return operation;
  }

  /** Completes an operation. */
  async #close(
    id: string,
    patch: { status: 'Succeeded' | 'Failed'; error?: SessionError },
  ): Promise<void> {
    await this.#ctx.store.updateOperation(id, patch);
    this.#due.delete(id);
  }

  /** An operation that is complete as soon as it exists (watcher delete). */
  async completed(
    kind: OperationKind,
    subscriptionId: string,
    location: string,
    resourceId: string,
  ): Promise<OperationRecord> {
    const now = this.#ctx.now();
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
    await this.#ctx.store.createOperation(operation);
    return operation;
  }

  /**
   * Completes every open operation of a session that its state now satisfies. Idempotent, and
   * called after every change, so an operation opened just after the change it waits for still
   * completes. A scale-set capture's child changes its parent: the parent's aggregate is
   * recomputed and the parent settled too.
   */
  async settle(sessionId: string): Promise<void> {
    const session = await this.#ctx.store.getSessionById(sessionId);
    await this.#settleOwn(sessionId, session);
    if (session?.parentId) {
      const parent = await refreshParent(this.#ctx, session.parentId);
      if (parent) await this.#settleOwn(parent.id, parent);
    }
  }

  async #settleOwn(sessionId: string, session: SessionRecord | undefined): Promise<void> {
    const { store } = this.#ctx;
    const operations = await store.listOpenOperations(sessionId);
    if (operations.length === 0) return;
    let deleted = false;
    for (const op of operations) {
      if (!session) {
        await this.#close(op.id, { status: 'Succeeded' });
        continue;
      }
      const ended = !isActive(session.status);
      switch (op.kind) {
        case 'create':
          // A scale-set capture fails only when every instance failed (its aggregate is Error).
          if (
            session.status === 'Error' ||
            (ended &&
              session.errors.length > 0 &&
              !session.captureStartTime &&
              !isScaleSetParent(session))
          ) {
            await this.#close(op.id, {
              status: 'Failed',
              error: session.errors[0] ?? { code: 'CaptureFailed', message: 'The capture failed' },
            });
          } else if (session.status !== 'NotStarted') {
            await this.#close(op.id, { status: 'Succeeded' });
          }
          break;
        case 'stop':
          if (ended) await this.#close(op.id, { status: 'Succeeded' });
          break;
        case 'delete':
          if (ended) {
            if (!deleted) await forgetSession(this.#ctx, this.#memory, session.id);
            deleted = true;
            await this.#close(op.id, { status: 'Succeeded' });
          }
          break;
      }
    }
    if (session && session.deleteRequested && !isActive(session.status) && !deleted) {
      await forgetSession(this.#ctx, this.#memory, session.id);
    }
  }

  /**
   * Holds every open operation to its deadline (operationTimeoutMs after it was asked for), so
   * that no client polls forever for an agent that never answers: a start not acknowledged by
   * then fails (the capture reads Error with AgentStopped); a stop or delete not acknowledged is
   * forced (the capture is recorded Stopped, with an AgentStopped detail saying so, and the
   * operation succeeds; the agent is told to stop whenever it speaks again). Returns how many
   * captures it ended.
   */
  async sweep(): Promise<number> {
    this.#loaded ??= this.#loadOpen().catch((err: unknown) => {
      this.#loaded = undefined;
      throw err;
    });
    await this.#loaded;
    const now = this.#ctx.now().getTime();
    const overdue = new Set<string>();
    for (const entry of this.#due.values()) {
      if (entry.dueMs <= now) overdue.add(entry.sessionId);
    }
    let ended = 0;
    for (const sessionId of overdue) {
      if (await this.#endOverdue(sessionId, now)) ended += 1;
    }
    return ended;
  }

  /** Operations a previous server process opened and did not complete. */
  async #loadOpen(): Promise<void> {
    for (const op of await this.#ctx.store.listInProgressOperations()) {
      if (this.#due.has(op.id) || op.sessionId === '') continue;
      this.#due.set(op.id, {
        sessionId: op.sessionId,
        dueMs: op.createdAt.getTime() + this.#timeoutMs,
      });
    }
  }

  async #endOverdue(sessionId: string, now: number): Promise<boolean> {
    const { store, agents } = this.#ctx;
    const open = await store.listOpenOperations(sessionId);
    const openIds = new Set(open.map((op) => op.id));
    for (const [id, entry] of this.#due) {
      if (entry.sessionId === sessionId && !openIds.has(id)) this.#due.delete(id);
    }
    const due = open.filter((op) => (this.#due.get(op.id)?.dueMs ?? Infinity) <= now);
    if (due.length === 0) return false;
    const session = await store.getSessionById(sessionId);
    let ended = false;
    // A scale-set capture ends through its children, whose own operations are held to the same
    // time: it is only settled here.
    if (session && isActive(session.status) && !isScaleSetParent(session)) {
      const connected = agents.isConnected(session.vmId);
      const seconds = Math.round(this.#timeoutMs / 1000);
      const stopping = session.stopRequested !== null || due.some((op) => op.kind !== 'create');
      if (stopping) {
        const reason = session.stopRequested ?? 'ManualIntervention';
        await finishSession(this.#ctx, this.#memory, session, {
          status: 'Stopped',
          stopReason: reason,
          errors: [
            {
              code: 'AgentStopped',
              message: `Stop forced: the agent ${connected ? 'did not acknowledge the stop' : 'was not connected'} within ${seconds} s; it is told to stop whenever it reconnects`,
            },
          ],
        });
        agents.send(session.vmId, {
          type: 'stop',
          sessionId,
          reason: toRequestReason(reason),
        });
        ended = true;
      } else if (session.status === 'NotStarted') {
        await finishSession(this.#ctx, this.#memory, session, {
          status: 'Error',
          stopReason: 'Error',
          errors: [
            {
              code: 'AgentStopped',
              message: connected
                ? `The agent did not acknowledge the start within ${seconds} s`
                : `The agent of the target VM was not connected within ${seconds} s`,
            },
          ],
        });
        // Should the start still arrive, it is undone.
        agents.send(session.vmId, {
          type: 'stop',
          sessionId,
          reason: 'ManualIntervention',
        });
        ended = true;
      }
      this.#ctx.log('warn', 'an operation was not acknowledged in time', {
        sessionId,
        operations: due.map((op) => op.kind),
        connected,
      });
    }
    await this.settle(sessionId);
    // Whatever settling could not complete (nothing should remain) is not looked at again.
    for (const op of due) this.#due.delete(op.id);
    return ended;
  }
}
