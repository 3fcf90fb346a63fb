/**
 * A control plane part's surroundings for its unit tests: a real SQLite store in memory with one
 * subscription, VM and network watcher, an AgentLink that records what is sent, and a clock the
 * test moves.
 */
import type { ServerMessage } from '../../src/model/channel.js';
import type { AgentLink, ControlContext } from '../../src/control/control-context.js';
import { DeadlineBackstop } from '../../src/control/deadlines.js';
import { LiveProgress } from '../../src/control/live-progress.js';
import type { SessionMemory } from '../../src/control/session-end.js';
import { generateSecretsKey, SecretBox } from '../../src/store/secret-box.js';
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import type { SessionRecord, Store } from '../../src/store/store.js';
import {
  session,
  subA,
  subscription,
  vm,
  watcher,
  type SessionOverrides,
} from './store-conformance/fixtures.js';

/** An AgentLink whose agents are connected as the test says, keeping every message sent. */
export class RecordingAgents implements AgentLink {
  readonly connected = new Set<string>();
  readonly sent: { vmId: string; message: ServerMessage }[] = [];

  isConnected(vmId: string): boolean {
    return this.connected.has(vmId);
  }

  send(vmId: string, message: ServerMessage): boolean {
    if (!this.connected.has(vmId)) return false;
    this.sent.push({ vmId, message });
    return true;
  }
}

export interface ControlFixture {
  readonly ctx: ControlContext;
  readonly store: Store;
  readonly agents: RecordingAgents;
  readonly logs: { level: string; msg: string }[];
  /** The VM every session of {@link ControlFixture.addSession} targets. */
  readonly vmId: string;
  /** Moves the clock by ms. */
  advance(ms: number): void;
  /** Memory with the given deadline grace and progress persist interval. */
  memory(options?: { graceMs?: number; persistMs?: number }): SessionMemory;
  /** Stores a session of the fixture's VM and watcher. */
  addSession(overrides?: SessionOverrides): Promise<SessionRecord>;
  close(): Promise<void>;
}

export async function createControlFixture(): Promise<ControlFixture> {
  const store = await createSqliteStore({
    path: ':memory:',
    secrets: new SecretBox(generateSecretsKey()),
  });
  await store.createSubscription(subscription(subA));
  const target = vm(subA);
  await store.upsertVm(target);
  await store.putWatcher(watcher(subA));
  const agents = new RecordingAgents();
  const logs: { level: string; msg: string }[] = [];
  let nowMs = Date.parse('2030-01-01T00:00:00.000Z');
  const ctx: ControlContext = {
    store,
    agents,
    now: () => new Date(nowMs),
    log: (level, msg) => logs.push({ level, msg }),
  };
  let count = 0;
  return {
    ctx,
    store,
    agents,
    logs,
    vmId: target.id,
    advance: (ms) => {
      nowMs += ms;
    },
    memory: (options = {}) => ({
      progress: new LiveProgress(ctx, options.persistMs ?? 30_000),
      deadlines: new DeadlineBackstop(ctx, options.graceMs ?? 30_000),
    }),
    addSession: async (overrides = {}) => {
      const record = session(subA, { vmId: target.id, name: `capture-${++count}`, ...overrides });
      const created = await store.createSession(record, 10_000);
      if (created.kind !== 'created') throw new Error(`session not created: ${created.kind}`);
      return created.session;
    },
    close: () => store.close(),
  };
}
