import type { SessionStopReason } from '../model/stop-reason.js';
import type { SessionRecord } from '../store/store.js';
import type { ControlContext } from './control-context.js';

/**
 * The server's backstop for deadlines. It holds the deadlines of the sessions agents report
 * running and looks only at these instead of loading every running session. An agent reports
 * what it runs on every connect, so after a server restart it refills as agents come back (a
 * disconnected agent's captures are not stopped by the backstop anyway).
 */
export class DeadlineBackstop {
  readonly #ctx: ControlContext;
  readonly #graceMs: number;
  readonly #deadlines = new Map<string, { vmId: string; deadlineMs: number }>();

  constructor(ctx: ControlContext, graceMs: number) {
    this.#ctx = ctx;
    this.#graceMs = graceMs;
  }

  /** A session runs since startTime: its deadline is then plus its duration. */
  note(session: SessionRecord, startTime: Date): void {
    this.#deadlines.set(session.id, {
      vmId: session.vmId,
      deadlineMs: startTime.getTime() + session.capture.durationSeconds * 1000,
    });
  }

  forget(sessionId: string): void {
    this.#deadlines.delete(sessionId);
  }

  /**
   * A capture still running well past its time limit (the agent enforces it; this catches an
   * agent that did not) is told to stop. Returns how many were.
   */
  async sweep(): Promise<number> {
    const { store, agents } = this.#ctx;
    const now = this.#ctx.now().getTime();
    let stopped = 0;
    for (const [sessionId, entry] of [...this.#deadlines]) {
      if (now <= entry.deadlineMs + this.#graceMs) continue;
      if (!agents.isConnected(entry.vmId)) continue;
      const session = await store.getSessionById(sessionId);
      this.#deadlines.delete(sessionId);
      if (!session || session.status !== 'Running' || session.stopRequested) continue;
      await store.updateSession(session.id, { stopRequested: 'TimeExceeded' });
      agents.send(session.vmId, {
        type: 'stop',
        sessionId: session.id,
        reason: 'TimeExceeded',
      });
      stopped += 1;
    }
    return stopped;
  }
}

/**
 * The stop time to record: a capture stopped by its time limit ended at its deadline (start +
 * limit), as the agent reports it, even when a stop came later (the backstop's, or a report
 * from an agent that ran late); it holds nothing stamped after it.
 */
export function stopTimeOf(
  session: SessionRecord,
  reason: SessionStopReason,
  at: Date,
  start: Date | null | undefined = session.captureStartTime,
): Date {
  if (reason !== 'TimeExceeded' || !start) return at;
  const deadline = start.getTime() + session.capture.durationSeconds * 1000;
  return at.getTime() > deadline ? new Date(deadline) : at;
}
