import type { SessionProgress, SessionRecord } from '../store/store.js';
import type { ControlContext } from './control-context.js';

/** Progress as an agent reports it on the channel. */
export interface ReportedProgress {
  packets: number;
  bytes: number;
  kernelDrops: number;
  at: string;
}

export function toProgress(p: ReportedProgress): SessionProgress {
  return { packets: p.packets, bytes: p.bytes, kernelDrops: p.kernelDrops, at: new Date(p.at) };
}

/**
 * Live progress by session id, served from memory; the store gets it every persistMs and at the
 * end, so sessions reporting every few seconds do not become a write each.
 */
export class LiveProgress {
  readonly #ctx: ControlContext;
  readonly #persistMs: number;
  readonly #entries = new Map<
    string,
    { progress: SessionProgress; persistedAt: number; vmId: string }
  >();

  constructor(ctx: ControlContext, persistMs: number) {
    this.#ctx = ctx;
    this.#persistMs = persistMs;
  }

  /** Whether this session's progress is held and came from that VM's agent. */
  isHeldFor(sessionId: string, vmId: string): boolean {
    return this.#entries.get(sessionId)?.vmId === vmId;
  }

  /** Holds the latest figures in memory only. */
  note(sessionId: string, vmId: string, progress: ReportedProgress): void {
    const previous = this.#entries.get(sessionId);
    this.#entries.set(sessionId, {
      progress: toProgress(progress),
      persistedAt: previous?.persistedAt ?? 0,
      vmId,
    });
  }

  /** Holds the latest figures, and writes them to the store if persistMs has passed. */
  async record(sessionId: string, vmId: string, progress: ReportedProgress): Promise<void> {
    this.note(sessionId, vmId, progress);
    const entry = this.#entries.get(sessionId)!;
    const now = this.#ctx.now().getTime();
    if (now - entry.persistedAt < this.#persistMs) return;
    entry.persistedAt = now;
    const updated = await this.#ctx.store.updateSession(sessionId, { progress: entry.progress });
    // Gone from the store (its watcher was deleted): stop remembering it.
    if (!updated) this.#entries.delete(sessionId);
  }

  /** Forgets a session's figures, returning what was held (for the final write). */
  take(sessionId: string): SessionProgress | undefined {
    const live = this.#entries.get(sessionId);
    this.#entries.delete(sessionId);
    return live?.progress;
  }

  /** The session with the latest figures held in memory. */
  withLive(session: SessionRecord): SessionRecord {
    const live = this.#entries.get(session.id);
    return live ? { ...session, progress: live.progress } : session;
  }
}
