/**
 * What must be in place before the agent connects: its data dir locked, its own ports reserved,
 * its identity (enrolled if needed), its journal with what a previous process left running
 * recovered, and the spooled copies a crash left behind removed.
 */
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_CAPTURE_ROOT } from '../capture/capture-path.js';
import { silentLog, type AgentLog } from './agent-log.js';
import type { AgentOptions } from './agent-options.js';
import { lockDataDir } from './data-dir-lock.js';
import { loadOrEnroll } from './enroll.js';
import { openJournal, type Journal } from './journal.js';
import { reserveOwnPorts, type OwnPorts } from './own-ports.js';
import { recoverSession } from './session-runner.js';
import { removeSpooledFiles } from './spool-files.js';
import { openWrittenFiles, type WrittenFiles } from './written-files.js';

/** What an agent runs on, in place before it connects. */
export interface AgentParts {
  readonly options: AgentOptions;
  readonly log: AgentLog;
  readonly captureRoot: string;
  readonly hostname: string;
  readonly journal: Journal;
  readonly written: WrittenFiles;
  readonly ownPorts: OwnPorts;
  readonly agentId: string;
  readonly vmId: string;
  readonly credential: string;
  readonly unlock: () => Promise<void>;
}

/**
 * Prepares an agent's parts: rejects when enrollment is refused or the data dir is unusable,
 * with the data dir unlocked again.
 */
export async function prepareAgent(options: AgentOptions): Promise<AgentParts> {
  const log = options.log ?? silentLog;
  const captureRoot = path.resolve(options.captureRoot ?? DEFAULT_CAPTURE_ROOT);
  const hostname = options.hostname ?? os.hostname();
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const lock = await lockDataDir(options.dataDir);
  try {
    // Every connection of the agent comes from its own ports, the enrollment's too.
    const ownPorts = await reserveOwnPorts({
      ...(options.ownPorts === undefined ? {} : { ports: options.ownPorts }),
      log,
    });
    const identity = await loadOrEnroll({
      agent: ownPorts.httpAgent(new URL(options.serverUrl).protocol === 'https:'),
      serverUrl: options.serverUrl,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.enrollToken === undefined ? {} : { enrollToken: options.enrollToken }),
      dataDir: options.dataDir,
      subscriptionId: options.subscriptionId,
      resourceGroup: options.resourceGroup,
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.scaleSet === undefined ? {} : { scaleSet: options.scaleSet }),
      ...(options.instanceId === undefined ? {} : { instanceId: options.instanceId }),
      location: options.location,
      hostname,
      captureRoot,
      log,
      backoffMinMs: options.backoffMinMs ?? 250,
      backoffMaxMs: options.backoffMaxMs ?? 15_000,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    const journal = await openJournal({ dataDir: options.dataDir, log });
    for (const entry of journal.entries()) {
      if (entry.state === 'Running') await journal.save(await recoverSession(entry, log));
    }
    const written = await openWrittenFiles({ dataDir: options.dataDir, log });
    const spoolDir = path.join(options.dataDir, 'spool');
    await mkdir(spoolDir, { recursive: true, mode: 0o700 });
    for (const entry of journal.entries()) {
      await removeSpooledFiles(entry, spoolDir).catch((err: unknown) =>
        log('warn', 'cannot remove a spooled capture', {
          sessionId: entry.assignment.sessionId,
          error: err,
        }),
      );
    }
    return {
      options,
      log,
      captureRoot,
      hostname,
      journal,
      written,
      ownPorts,
      agentId: identity.agentId,
      vmId: identity.vmId,
      credential: identity.credential,
      unlock: lock,
    };
  } catch (err) {
    await lock();
    throw err;
  }
}
