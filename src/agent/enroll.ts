/**
 * Enrollment: the first start trades the subscription's enrollment token for the agent's own
 * credential and saves it in `<data dir>/agent.json` (mode 0600); later starts reuse it.
 */
import { request as httpRequest, type Agent, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import {
  ENROLL_PATH,
  EnrollRequestSchema,
  EnrollResponseSchema,
  type EnrollRequest,
  type EnrollResponse,
} from '../model/channel.js';
import {
  INSTANCE_ID_RULE,
  isInstanceId,
  isScaleSetName,
  SCALE_SET_NAME_RULE,
} from '../model/scale-set.js';
import type { AgentLog } from './agent-log.js';
import { backoffDelay, sleep } from './backoff.js';
import { readIfExists, removeFileDurably, writeFileDurably } from '../files/durable-file.js';

export const IDENTITY_FILE = 'agent.json';

export const AgentIdentitySchema = Type.Object({
  agentId: Type.String(),
  vmId: Type.String(),
  credential: Type.String({ minLength: 1 }),
  serverUrl: Type.String(),
  subscriptionId: Type.String(),
  resourceGroup: Type.String(),
  /** The VM's name; a scale-set instance's is `{scaleSet}_{instanceId}`. */
  name: Type.String(),
  location: Type.String(),
  /** A scale-set instance's scale set and id (as enrolled or assigned by the server). */
  scaleSet: Type.Optional(Type.String()),
  instanceId: Type.Optional(Type.String()),
});
/** What `agent.json` holds. */
export type AgentIdentity = Static<typeof AgentIdentitySchema>;

const identityCheck = Compile(AgentIdentitySchema);
const responseCheck = Compile(EnrollResponseSchema);
/** Each field of an enrollment, checked alone so that a refusal names the option at fault. */
const requestFieldChecks = Object.entries(EnrollRequestSchema.properties).map(
  ([field, schema]) => [field, Compile(schema)] as const,
);
const optionalFields = new Set(['name', 'scaleSet', 'instanceId']);

/**
 * Checks the VM's identity before anything is sent: the server would refuse it anyway, but
 * here the message can name the option.
 */
export function checkEnrollRequest(request: EnrollRequest): void {
  const options: Record<string, string> = {
    subscriptionId: '--subscription (a uuid)',
    resourceGroup: '--resource-group (letters, digits, -_.() up to 90)',
    name: '--name (letters, digits, -._, starting with a letter or digit, up to 64)',
    location: '--location (lower-case letters and digits, e.g. westeurope)',
    hostname: 'the hostname',
    captureRoot: '--capture-root',
  };
  if ((request.name === undefined) === (request.scaleSet === undefined)) {
    throw new Error('give either --name (a VM) or --scale-set (an instance of a scale set)');
  }
  if (request.instanceId !== undefined && request.scaleSet === undefined) {
    throw new Error('--instance-id goes with --scale-set');
  }
  for (const [field, check] of requestFieldChecks) {
    const value = (request as Record<string, unknown>)[field];
    if (value === undefined && optionalFields.has(field)) continue;
    if (!check.Check(value)) {
      throw new Error(`${JSON.stringify(value)} is not a valid ${options[field] ?? field}`);
    }
  }
  if (request.scaleSet !== undefined && !isScaleSetName(request.scaleSet)) {
    throw new Error(
      `${JSON.stringify(request.scaleSet)} is not a valid --scale-set (${SCALE_SET_NAME_RULE})`,
    );
  }
  if (request.instanceId !== undefined && !isInstanceId(request.instanceId)) {
    throw new Error(
      `${JSON.stringify(request.instanceId)} is not a valid --instance-id (${INSTANCE_ID_RULE})`,
    );
  }
}

/** The server refused the enrollment (4xx): retrying would not help. */
export class EnrollmentRefusedError extends Error {
  override readonly name = 'EnrollmentRefusedError';
  constructor(
    readonly status: number,
    readonly code: string,
    readonly serverMessage: string,
    readonly target?: string,
  ) {
    super(
      `enrollment refused by the server: HTTP ${status} ${code}: ${serverMessage}` +
        (target === undefined ? '' : ` (target: ${target})`),
    );
  }
}

/** The server's answer could not be used (not JSON, wrong shape) or it failed (5xx). */
class EnrollmentAttemptError extends Error {}

export function identityPath(dataDir: string): string {
  return path.join(dataDir, IDENTITY_FILE);
}

/** Reads agent.json; undefined when there is none. */
export async function readIdentity(dataDir: string): Promise<AgentIdentity | undefined> {
  const file = identityPath(dataDir);
  const text = await readIfExists(file, 'utf8');
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (!identityCheck.Check(value)) {
    throw new Error(
      `${file} is damaged; remove it and start the agent with --enroll-token to enroll again`,
    );
  }
  return value;
}

export async function writeIdentity(dataDir: string, identity: AgentIdentity): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await writeFileDurably(identityPath(dataDir), JSON.stringify(identity, null, 2) + '\n', {
    mode: 0o600,
  });
}

/** Forgets the credential (the VM was deleted or the credential revoked). */
export async function deleteIdentity(dataDir: string): Promise<void> {
  await removeFileDurably(identityPath(dataDir));
}

export interface EnrollOptions {
  readonly serverUrl: string;
  readonly ca?: Buffer;
  readonly enrollToken: string;
  readonly request: EnrollRequest;
  readonly log: AgentLog;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
  readonly signal?: AbortSignal;
  /** Makes the connection (the agent's own-port pool, src/agent/own-ports.ts). */
  readonly agent?: Agent;
}

/**
 * POSTs the enrollment. Network errors and 5xx answers are retried with backoff until the
 * signal aborts; a 4xx answer throws {@link EnrollmentRefusedError}.
 */
export async function enroll(options: EnrollOptions): Promise<EnrollResponse> {
  const url = new URL(serverBase(options.serverUrl) + ENROLL_PATH);
  const body = JSON.stringify(options.request);
  for (let attempt = 0; ; attempt++) {
    options.signal?.throwIfAborted();
    try {
      return await postOnce(url, body, options);
    } catch (err) {
      if (err instanceof EnrollmentRefusedError || options.signal?.aborted) throw err;
      const delay = backoffDelay(attempt, options.backoffMinMs, options.backoffMaxMs);
      options.log('warn', 'enrollment failed; retrying', {
        error: err instanceof Error ? err.message : String(err),
        retryInMs: delay,
      });
      await sleep(delay, options.signal);
    }
  }
}

/** The server URL without a trailing slash; http(s) only. */
export function serverBase(serverUrl: string): string {
  const url = new URL(serverUrl);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`--server must be an http:// or https:// URL, not ${url.protocol}`);
  }
  return url.href.replace(/\/+$/, '');
}

function postOnce(url: URL, body: string, options: EnrollOptions): Promise<EnrollResponse> {
  return new Promise((resolve, reject) => {
    const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = request(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${options.enrollToken}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        accept: 'application/json',
      },
      timeout: 30_000,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.agent === undefined ? {} : { agent: options.agent }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    req.on('timeout', () => req.destroy(new Error('the server did not answer within 30 s')));
    req.on('error', reject);
    req.on('response', (res) => {
      readBody(res)
        .then((text) => resolve(interpret(res.statusCode ?? 0, text)))
        .catch(reject);
    });
    req.end(body);
  });
}

const MAX_BODY = 1024 * 1024;

async function readBody(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) {
      res.destroy();
      throw new EnrollmentAttemptError('the enrollment answer is larger than 1 MiB');
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function interpret(status: number, text: string): EnrollResponse {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (status >= 200 && status < 300) {
    if (!responseCheck.Check(value)) {
      throw new EnrollmentAttemptError(`the enrollment answer (HTTP ${status}) is not valid`);
    }
    return value;
  }
  const error = (value as { error?: { code?: unknown; message?: unknown; target?: unknown } })
    ?.error;
  const code = typeof error?.code === 'string' ? error.code : `HTTP${status}`;
  const message = typeof error?.message === 'string' ? error.message : text.slice(0, 200);
  if (status >= 400 && status < 500) {
    throw new EnrollmentRefusedError(
      status,
      code,
      message,
      typeof error?.target === 'string' ? error.target : undefined,
    );
  }
  throw new EnrollmentAttemptError(`HTTP ${status} ${code}: ${message}`);
}

export interface LoadIdentityOptions extends Omit<EnrollOptions, 'request' | 'enrollToken'> {
  readonly dataDir: string;
  readonly enrollToken?: string;
  readonly subscriptionId: string;
  readonly resourceGroup: string;
  /** A plain VM's name; or, for an instance, `scaleSet` (and `instanceId`, to choose it). */
  readonly name?: string;
  readonly scaleSet?: string;
  readonly instanceId?: string;
  readonly location: string;
  readonly hostname: string;
  readonly captureRoot: string;
}

/**
 * What must be the same in agent.json and the options: [what, saved, asked for], compared
 * case-insensitively. An instance whose id the server assigned matches any restart that does not
 * name another id.
 */
function identityChecks(
  saved: AgentIdentity,
  options: LoadIdentityOptions,
): [string, string | undefined, string | undefined][] {
  const checks: [string, string | undefined, string | undefined][] = [
    ['subscriptionId', saved.subscriptionId, options.subscriptionId],
    ['resourceGroup', saved.resourceGroup, options.resourceGroup],
    ['scaleSet', saved.scaleSet, options.scaleSet],
  ];
  if (options.scaleSet === undefined) checks.push(['name', saved.name, options.name]);
  if (options.instanceId !== undefined) {
    checks.push(['instanceId', saved.instanceId, options.instanceId]);
  }
  return checks;
}

/**
 * The agent's identity: agent.json when it exists (it must be for the same VM, or the same
 * scale set), otherwise a new enrollment, saved before it is returned. An instance enrolled
 * without an instance id keeps the one the server assigned: agent.json holds it.
 */
export async function loadOrEnroll(options: LoadIdentityOptions): Promise<AgentIdentity> {
  const saved = await readIdentity(options.dataDir);
  if (saved !== undefined) {
    for (const [key, have, want] of identityChecks(saved, options)) {
      if (have?.toLowerCase() !== want?.toLowerCase()) {
        throw new Error(
          `${identityPath(options.dataDir)} belongs to ${key} ${JSON.stringify(have ?? null)}, not ${JSON.stringify(want ?? null)}; ` +
            'use another --data-dir, or remove agent.json to enroll again',
        );
      }
    }
    if (serverBase(saved.serverUrl) !== serverBase(options.serverUrl)) {
      options.log('warn', 'the server URL differs from the one this agent enrolled with', {
        enrolledWith: saved.serverUrl,
        serverUrl: options.serverUrl,
      });
    }
    return saved;
  }
  if (options.enrollToken === undefined || options.enrollToken === '') {
    throw new Error(
      `this agent is not enrolled (no ${identityPath(options.dataDir)}): --enroll-token is needed for the first start`,
    );
  }
  const host = {
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(options.scaleSet === undefined ? {} : { scaleSet: options.scaleSet }),
    ...(options.instanceId === undefined ? {} : { instanceId: options.instanceId }),
  };
  const request: EnrollRequest = {
    subscriptionId: options.subscriptionId,
    resourceGroup: options.resourceGroup,
    ...host,
    location: options.location,
    hostname: options.hostname,
    captureRoot: options.captureRoot,
  };
  checkEnrollRequest(request);
  options.log('info', 'enrolling', {
    serverUrl: options.serverUrl,
    subscriptionId: options.subscriptionId,
    resourceGroup: options.resourceGroup,
    ...host,
    location: options.location,
  });
  const answer = await enroll({
    ...options,
    enrollToken: options.enrollToken,
    request,
  });
  const name = answer.name ?? options.name;
  const instanceId = answer.instanceId ?? options.instanceId;
  if (name === undefined || (options.scaleSet !== undefined && instanceId === undefined)) {
    // Only a server from before scale sets answers without them, and it refuses --scale-set.
    throw new Error('the server did not say which instance of the scale set this host is');
  }
  const identity: AgentIdentity = {
    agentId: answer.agentId,
    vmId: answer.vmId,
    credential: answer.credential,
    serverUrl: options.serverUrl,
    subscriptionId: options.subscriptionId,
    resourceGroup: options.resourceGroup,
    name,
    location: options.location,
    ...(options.scaleSet === undefined ? {} : { scaleSet: options.scaleSet, instanceId }),
  };
  await writeIdentity(options.dataDir, identity);
  options.log('info', 'enrolled', {
    agentId: identity.agentId,
    vmId: identity.vmId,
    ...(instanceId === undefined ? {} : { instanceId }),
  });
  return identity;
}
