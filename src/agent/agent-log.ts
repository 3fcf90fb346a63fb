/** The agent's log: structured lines, never a secret. */

export type AgentLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Fields are plain JSON values; they must never carry the credential or the enrollment token. */
export type AgentLogFields = Readonly<Record<string, unknown>>;

export type AgentLog = (level: AgentLogLevel, msg: string, fields?: AgentLogFields) => void;

/** Field names whose values are replaced, in case a caller ever passes one by mistake. */
const secretFields = /^(credential|token|enrolltoken|enroll_token|authorization|password)$/i;

/**
 * A log writing one JSON object per line (`{"time","level","msg",...}`) through `write`
 * (stderr in the CLI). Errors become `{code?, message}`.
 */
export function createJsonLineLog(
  write: (line: string) => void,
  options: { readonly minLevel?: AgentLogLevel } = {},
): AgentLog {
  const order: Record<AgentLogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  const min = order[options.minLevel ?? 'info'];
  return (level, msg, fields = {}) => {
    if (order[level] < min) return;
    const record: Record<string, unknown> = { time: new Date().toISOString(), level, msg };
    for (const [key, value] of Object.entries(fields)) {
      record[key] = secretFields.test(key) ? '[redacted]' : toJsonValue(value);
    }
    let line: string;
    try {
      line = JSON.stringify(record);
    } catch {
      line = JSON.stringify({ time: record.time, level, msg });
    }
    write(line + '\n');
  };
}

/** A log that drops everything (the default when none is given). */
export const silentLog: AgentLog = () => undefined;

function toJsonValue(value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return { ...(typeof code === 'string' ? { code } : {}), message: value.message };
  }
  return value;
}
