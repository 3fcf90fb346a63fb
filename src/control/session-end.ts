import type { SessionStopReason, StopRequestReason } from '../model/stop-reason.js';
import type { SessionError, SessionRecord, SessionStatus } from '../store/store.js';
import type { ControlContext } from './control-context.js';
import { stopTimeOf, type DeadlineBackstop } from './deadlines.js';
import type { LiveProgress } from './live-progress.js';

/** What the control plane holds in memory per running session, dropped when it ends. */
export interface SessionMemory {
  readonly progress: LiveProgress;
  readonly deadlines: DeadlineBackstop;
}

export function isActive(status: SessionStatus): boolean {
  return status === 'NotStarted' || status === 'Running';
}

export const ACTIVE: readonly SessionStatus[] = ['NotStarted', 'Running'];

/** Ends a session on the server's word, keeping the live progress held for it. */
export async function finishSession(
  ctx: ControlContext,
  memory: SessionMemory,
  session: SessionRecord,
  patch: { status: SessionStatus; stopReason: SessionStopReason; errors?: SessionError[] },
): Promise<SessionRecord | undefined> {
  const live = memory.progress.take(session.id);
  memory.deadlines.forget(session.id);
  return ctx.store.updateSession(session.id, {
    status: patch.status,
    stopReason: patch.stopReason,
    errors: patch.errors ?? [],
    stopTime: stopTimeOf(session, patch.stopReason, ctx.now()),
    stopRequested: null,
    ...(live ? { progress: live } : {}),
  });
}

/** Removes a session from memory and from the store; a scale-set capture's children with it. */
export async function forgetSession(
  ctx: ControlContext,
  memory: SessionMemory,
  sessionId: string,
): Promise<void> {
  const children = await ctx.store.listChildSessions(sessionId);
  for (const id of [sessionId, ...children.map((c) => c.id)]) {
    memory.progress.take(id);
    memory.deadlines.forget(id);
  }
  await ctx.store.deleteSession(sessionId);
}

/** The reason an agent is told when the server asks it to stop a session. */
export function toRequestReason(reason: SessionStopReason | null): StopRequestReason {
  return reason === 'TimeExceeded' || reason === 'TargetDeleted' ? reason : 'ManualIntervention';
}
