/**
 * What the agent's `hello` carries (src/model/channel.ts): every session of its journal, within
 * the channel's size limits.
 */
import {
  CHANNEL_MAX_PAYLOAD_BYTES,
  MAX_HELLO_SESSIONS,
  type ObservedSession,
} from '../model/channel.js';

/** Room kept in a hello for everything but its sessions. */
const HELLO_ENVELOPE_BYTES = 64 * 1024;

/**
 * The sessions a hello can carry within CHANNEL_MAX_PAYLOAD_BYTES and MAX_HELLO_SESSIONS: every
 * running one (the server would otherwise take a running session it does not hear of as lost),
 * then stopped ones while they fit. The others are held back, to be offered after welcome.
 * Running sessions go without their files and the blobs of their pending upload, which the
 * server reads only from a session's end, so that all of them fit: 10,000 take about 3 MiB.
 */
export function fitHello(all: readonly ObservedSession[]): {
  sessions: ObservedSession[];
  heldBack: string[];
} {
  const running = all.filter((s) => s.state === 'Running').map(withoutBulk);
  const stopped = all.filter((s) => s.state !== 'Running');
  const sessions: ObservedSession[] = [];
  const heldBack: string[] = [];
  let bytes = HELLO_ENVELOPE_BYTES;
  for (const s of [...running, ...stopped]) {
    const size = Buffer.byteLength(JSON.stringify(s)) + 1;
    const fits = sessions.length < MAX_HELLO_SESSIONS && bytes + size <= CHANNEL_MAX_PAYLOAD_BYTES;
    if (fits || s.state === 'Running') {
      sessions.push(s);
      bytes += size;
    } else heldBack.push(s.sessionId);
  }
  return { sessions, heldBack };
}

function withoutBulk(s: ObservedSession): ObservedSession {
  const { files: _files, ...rest } = s;
  return s.upload?.state === 'Pending' ? { ...rest, upload: { ...s.upload, blobs: [] } } : rest;
}
