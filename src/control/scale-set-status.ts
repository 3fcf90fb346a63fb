import type { SessionStopReason } from '../model/stop-reason.js';
import type {
  SessionError,
  SessionProgress,
  SessionRecord,
  SessionStatus,
} from '../store/store.js';
import type { ControlContext } from './control-context.js';

/**
 * A scale-set capture's state is its children's: the parent session stores the aggregate,
 * recomputed (refreshParent) whenever a child changes; progress is summed at read time.
 */

/** What a parent stores of its children. */
export interface ScaleSetAggregate {
  readonly status: SessionStatus;
  readonly stopReason: SessionStopReason | null;
  /** Every child's errors, each message led by its instance (`instance 2: …`). */
  readonly errors: readonly SessionError[];
  /** The earliest child start. */
  readonly captureStartTime: Date | null;
  /** The last child stop, once every child ended. */
  readonly stopTime: Date | null;
}

/**
 * The aggregate of a parent's children:
 * - `Running` while any child runs, or while one ran (and did not fail) and another may still
 *   start;
 * - `NotStarted` while none has started and some may still (also with no child yet);
 * - `Stopped` when all ended and at least one did not fail; `Error` only when all failed.
 * The stop reason (once all ended) is `asked`, the reason of the parent's own stop request, if
 * there was one; else the children's if they agree; else that of the first child to end.
 */
export function aggregateOf(
  children: readonly SessionRecord[],
  asked: SessionStopReason | null = null,
): ScaleSetAggregate {
  const starts = children.flatMap((c) => (c.captureStartTime ? [c.captureStartTime] : []));
  const captureStartTime = earliest(starts);
  const errors = children.flatMap((c) =>
    c.errors.map((e) => ({
      code: e.code,
      message: `instance ${c.instanceId ?? '?'}: ${e.message}`,
    })),
  );
  const active = children.filter((c) => c.status === 'NotStarted' || c.status === 'Running');
  if (children.length === 0 || active.length > 0) {
    // A child that failed never counts as started, whatever start time it reported.
    const running = children.some(
      (c) => c.status === 'Running' || (c.status === 'Stopped' && c.captureStartTime !== null),
    );
    return {
      status: running ? 'Running' : 'NotStarted',
      stopReason: null,
      errors,
      captureStartTime,
      stopTime: null,
    };
  }
  const stops = children.flatMap((c) => (c.stopTime ? [c.stopTime] : []));
  return {
    status: children.every((c) => c.status === 'Error') ? 'Error' : 'Stopped',
    stopReason: asked ?? commonReason(children) ?? firstToEnd(children),
    errors,
    captureStartTime,
    stopTime: latest(stops),
  };
}

/** The children's progress summed (the latest time of any); null when none has reported. */
export function summedProgress(children: readonly SessionRecord[]): SessionProgress | null {
  const reported = children.flatMap((c) => (c.progress ? [c.progress] : []));
  if (reported.length === 0) return null;
  return {
    packets: reported.reduce((n, p) => n + p.packets, 0),
    bytes: reported.reduce((n, p) => n + p.bytes, 0),
    kernelDrops: reported.reduce((n, p) => n + p.kernelDrops, 0),
    at: latest(reported.map((p) => p.at)) ?? new Date(0),
  };
}

/** Whether a session is a scale-set capture's parent (the ARM resource of the capture). */
export function isScaleSetParent(session: SessionRecord): boolean {
  return session.parentId === null && session.capture.target.type === 'AzureVMSS';
}

/**
 * Recomputes a parent's aggregate from its stored children and stores it when it changed.
 * Returns the parent as stored after it; undefined when it is gone.
 */
export async function refreshParent(
  ctx: ControlContext,
  parentId: string,
): Promise<SessionRecord | undefined> {
  const { store } = ctx;
  const parent = await store.getSessionById(parentId);
  if (!parent) return undefined;
  const aggregate = aggregateOf(await store.listChildSessions(parentId), parent.stopRequested);
  if (sameAggregate(parent, aggregate)) return parent;
  return store.updateSession(parentId, { ...aggregate, errors: [...aggregate.errors] });
}

function sameAggregate(parent: SessionRecord, a: ScaleSetAggregate): boolean {
  return (
    parent.status === a.status &&
    parent.stopReason === a.stopReason &&
    parent.captureStartTime?.getTime() === a.captureStartTime?.getTime() &&
    parent.stopTime?.getTime() === a.stopTime?.getTime() &&
    JSON.stringify(parent.errors) === JSON.stringify(a.errors)
  );
}

function commonReason(children: readonly SessionRecord[]): SessionStopReason | null {
  const reasons = new Set(children.map((c) => c.stopReason));
  const [only] = reasons;
  return reasons.size === 1 && only !== undefined ? only : null;
}

function firstToEnd(children: readonly SessionRecord[]): SessionStopReason | null {
  let first: SessionRecord | undefined;
  for (const c of children) {
    if (c.stopReason === null) continue;
    const t = c.stopTime?.getTime() ?? Infinity;
    if (!first || t < (first.stopTime?.getTime() ?? Infinity)) first = c;
  }
  return first?.stopReason ?? null;
}

function earliest(times: readonly Date[]): Date | null {
  return times.reduce<Date | null>((a, t) => (a === null || t < a ? t : a), null);
}

function latest(times: readonly Date[]): Date | null {
  return times.reduce<Date | null>((a, t) => (a === null || t > a ? t : a), null);
}
