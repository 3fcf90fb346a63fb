/**
 * Route × credential × tenant: every route the server registers, asked by every kind of caller.
 * It generalises test/server/tenancy.test.ts's table to every route, HEAD included, to the agent
 * routes and /healthz, and it is complete by construction: the route list comes from the running
 * app (`printRoutes`), so a route added without a row here fails the first test.
 *
 * Two tenants A and B (test/security/world.ts), each with a token per role, a synthetic agent, a
 * running capture, a tagged watcher and a storage account in a real Azurite; plus the admin token
 * and credentials that are not API tokens (none, garbage, revoked, an agent's, an enrollment
 * token). For every route and caller:
 *
 * - not an API token (user routes) → 401 AuthenticationFailed;
 * - too weak a role in its own subscription → 403 AuthorizationFailed;
 * - the other tenant's subscription → 404 SubscriptionNotFound, the same answer (ids aside) as a
 *   subscription that does not exist, and nothing of the other tenant in it;
 * - enough role → the route's success status, and nothing of the other tenant in it;
 * - agent routes: API and admin tokens open neither enrollment nor the channel.
 *
 * Refused requests go at the fixtures themselves; a snapshot afterwards shows nothing changed.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAzurite, type Azurite } from '../../src/blob/azurite.js';
import { CHANNEL_PATH, ENROLL_PATH } from '../../src/model/channel.js';
import { CAPTURE_ROUTE } from '../../src/server/routes/capture-route.js';
import {
  startTestServer,
  upgradeStatus,
  vmId,
  type Reply,
  type TestServer,
} from '../lab/control-plane.js';
import {
  LOCATION,
  MAIN,
  NW_RG,
  RG,
  captureBody,
  compute,
  createSide,
  enrollVm,
  net,
  nwPath,
  opBase,
  pcPath,
  registeredRoutes,
  routeRegExp,
  storage,
  type RegisteredRoute,
  type Side,
} from './world.js';

type Role = 'Reader' | 'Contributor' | 'Owner';
type Need = Role | 'Admin' | 'Any';
type SideName = 'A' | 'B';
/** Who a route is for: API callers, agents enrolling, an agent's channel, or anyone. */
type Audience = 'api' | 'enroll' | 'channel' | 'open';

interface Request {
  readonly path: string;
  readonly body?: unknown;
}

interface Route {
  readonly method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** The pattern as the server registers it (printRoutes lower-cases the static parts). */
  readonly route: string;
  readonly audience: Audience;
  /** The least a principal needs: a role in the subscription, the admin token, or any token. */
  readonly need: Need;
  /** false for the routes outside any subscription. */
  readonly scoped: boolean;
  /** The request on a side's real fixtures, with `sub` in the path (the side's, or made up). */
  readonly real: (s: Side, sub: string) => Request;
  /** A request that may succeed without harming the fixtures; default `real`. */
  readonly fresh?: (s: Side) => Request | Promise<Request>;
  /** What success answers. */
  readonly ok: readonly number[];
}

const SUB = '/subscriptions/:subscriptionId';
const WATCHERS = `${SUB}/resourceGroups/:resourceGroupName/providers/Microsoft.Network/networkWatchers`;
const VMS = `${SUB}/resourceGroups/:resourceGroupName/providers/Microsoft.Compute/virtualMachines`;
const ACCOUNTS = `${SUB}/resourceGroups/:resourceGroupName/providers/Microsoft.Storage/storageAccounts`;
const SCALE_SETS = `${SUB}/resourceGroups/:resourceGroupName/providers/Microsoft.Compute/virtualMachineScaleSets`;
/** Each tenant's scale set, with instance 0 enrolled (no channel). */
const SCALE_SET = 'ss1';
const scaleSetsPath = (sub: string) =>
  `/subscriptions/${sub}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachineScaleSets`;
const scaleSetPath = (sub: string, name: string) => `${scaleSetsPath(sub)}/${name}`;
const OPS = `${SUB}/providers/Microsoft.Network/locations/:location`;
const NATIVE = '/api/v1/subscriptions/:subscriptionId';
/** Each tenant's registered storage account (names are per subscription, as in Azure). */
const ACCOUNT = 'acct1';
const ACCOUNT_RG = 'rg-storage';

let t: TestServer;
let azurite: Azurite;
let dir: string;
const sides = new Map<SideName, Side>();
const side = (name: SideName): Side => sides.get(name)!;
const other = (name: SideName): SideName => (name === 'A' ? 'B' : 'A');
/** An Owner token and an enrollment token of each tenant that refused revocations aim at. */
const spare = new Map<SideName, { id: string; token: string }>();
const spareEnrollment = new Map<SideName, { id: string; token: string }>();
/** Credentials that are not API tokens, or no longer are. */
const invalid = new Map<string, string>();
let serial = 0;
const next = () => ++serial;

const routes: readonly Route[] = [
  {
    method: 'GET',
    route: '/healthz',
    audience: 'open',
    need: 'Any',
    scoped: false,
    real: () => ({ path: '/healthz' }),
    ok: [200],
  },
  {
    method: 'GET',
    route: '/metrics',
    audience: 'api',
    need: 'Admin',
    scoped: false,
    real: () => ({ path: '/metrics' }),
    ok: [200],
  },
  // ---- network watchers
  {
    method: 'PUT',
    route: `${WATCHERS}/:networkWatcherName`,
    audience: 'api',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({
      path: net(nwPath(sub)),
      body: { location: LOCATION, tags: { intruder: 'yes' } },
    }),
    fresh: (s) => {
      const n = next();
      return {
        path: net(
          `/subscriptions/${s.sub}/resourceGroups/rg-nw/providers/Microsoft.Network/networkWatchers/nw-put-${n}`,
        ),
        body: { location: `put${n}` },
      };
    },
    ok: [201],
  },
  {
    method: 'GET',
    route: `${WATCHERS}/:networkWatcherName`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(nwPath(sub)) }),
    ok: [200],
  },
  {
    method: 'DELETE',
    route: `${WATCHERS}/:networkWatcherName`,
    audience: 'api',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({ path: net(nwPath(sub)) }),
    fresh: async (s) => ({ path: net(await newWatcher(s)) }),
    ok: [202],
  },
  {
    method: 'GET',
    route: WATCHERS,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: net(
        `/subscriptions/${sub}/resourceGroups/${NW_RG}/providers/Microsoft.Network/networkWatchers`,
      ),
    }),
    ok: [200],
  },
  {
    method: 'GET',
    route: `${SUB}/providers/Microsoft.Network/networkWatchers`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: net(`/subscriptions/${sub}/providers/Microsoft.Network/networkWatchers`),
    }),
    ok: [200],
  },
  // ---- packet captures
  {
    method: 'PUT',
    route: CAPTURE_ROUTE,
    audience: 'api',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({
      path: net(pcPath(sub, 'pc-intruder')),
      body: captureBody(sub, 'intruder'),
    }),
    fresh: (s) => {
      const name = `put-${next()}`;
      return { path: net(pcPath(s.sub, name)), body: captureBody(s.sub, name) };
    },
    ok: [201],
  },
  {
    method: 'GET',
    route: CAPTURE_ROUTE,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(pcPath(sub, MAIN)) }),
    ok: [200],
  },
  {
    method: 'GET',
    route: `${WATCHERS}/:networkWatcherName/packetCaptures`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${nwPath(sub)}/packetCaptures`) }),
    ok: [200],
  },
  {
    method: 'DELETE',
    route: CAPTURE_ROUTE,
    audience: 'api',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({ path: net(pcPath(sub, MAIN)) }),
    fresh: async (s) => ({ path: net(pcPath(s.sub, await newCapture(s))) }),
    ok: [202, 204],
  },
  {
    method: 'POST',
    route: `${CAPTURE_ROUTE}/stop`,
    audience: 'api',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${pcPath(sub, MAIN)}/stop`) }),
    fresh: async (s) => ({ path: net(`${pcPath(s.sub, await newCapture(s))}/stop`) }),
    ok: [200, 202],
  },
  {
    method: 'POST',
    route: `${CAPTURE_ROUTE}/queryStatus`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${pcPath(sub, MAIN)}/queryStatus`) }),
    ok: [200],
  },
  {
    // MAIN is running, so an allowed caller learns exactly that (409). Downloads themselves:
    // test/server/capture-content.test.ts.
    method: 'GET',
    route: `${CAPTURE_ROUTE}/content`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${pcPath(sub, MAIN)}/content`) }),
    ok: [409],
  },
  {
    // A plain GET from an allowed caller passes every check and is told to upgrade (400).
    method: 'GET',
    route: `${CAPTURE_ROUTE}/stream`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: net(`${pcPath(sub, MAIN)}/stream`) }),
    ok: [400],
  },
  // ---- operations
  {
    method: 'GET',
    route: `${OPS}/operations/:operationId`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (s, sub) => ({ path: net(`${opBase(sub)}/operations/${s.opId}`) }),
    ok: [200],
  },
  {
    method: 'GET',
    route: `${OPS}/operationResults/:operationId`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (s, sub) => ({ path: net(`${opBase(sub)}/operationResults/${s.opId}`) }),
    ok: [200],
  },
  // ---- virtual machines
  {
    method: 'GET',
    route: `${VMS}/:vmName`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: compute(vmId(sub, RG, 'vm1')) }),
    ok: [200],
  },
  {
    method: 'DELETE',
    route: `${VMS}/:vmName`,
    audience: 'api',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({ path: compute(vmId(sub, RG, 'vm1')) }),
    fresh: async (s) => ({
      path: compute(vmId(s.sub, RG, (await enrollVm(t, s, `vm-fresh-${next()}`)).name)),
    }),
    ok: [200],
  },
  {
    method: 'GET',
    route: VMS,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: compute(
        `/subscriptions/${sub}/resourceGroups/${RG}/providers/Microsoft.Compute/virtualMachines`,
      ),
    }),
    ok: [200],
  },
  {
    method: 'GET',
    route: `${SUB}/providers/Microsoft.Compute/virtualMachines`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: compute(`/subscriptions/${sub}/providers/Microsoft.Compute/virtualMachines`),
    }),
    ok: [200],
  },
  // ---- scale sets (ARM reads; an instance deregisters as a VM does)
  {
    method: 'GET',
    route: `${SUB}/providers/Microsoft.Compute/virtualMachineScaleSets`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: compute(`/subscriptions/${sub}/providers/Microsoft.Compute/virtualMachineScaleSets`),
    }),
    ok: [200],
  },
  {
    method: 'GET',
    route: SCALE_SETS,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: compute(scaleSetsPath(sub)) }),
    ok: [200],
  },
  {
    method: 'GET',
    route: `${SCALE_SETS}/:vmScaleSetName`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: compute(scaleSetPath(sub, SCALE_SET)) }),
    ok: [200],
  },
  {
    method: 'GET',
    route: `${SCALE_SETS}/:vmScaleSetName/virtualMachines`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: compute(`${scaleSetPath(sub, SCALE_SET)}/virtualMachines`) }),
    ok: [200],
  },
  {
    method: 'GET',
    route: `${SCALE_SETS}/:vmScaleSetName/virtualMachines/:instanceId`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: compute(`${scaleSetPath(sub, SCALE_SET)}/virtualMachines/0`) }),
    ok: [200],
  },
  {
    method: 'DELETE',
    route: `${SCALE_SETS}/:vmScaleSetName/virtualMachines/:instanceId`,
    audience: 'api',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({ path: compute(`${scaleSetPath(sub, SCALE_SET)}/virtualMachines/0`) }),
    fresh: async (s) => {
      const { instanceId } = await enrollVm(t, s, { scaleSet: SCALE_SET });
      return { path: compute(`${scaleSetPath(s.sub, SCALE_SET)}/virtualMachines/${instanceId}`) };
    },
    ok: [200],
  },
  // ---- storage accounts (ARM reads)
  {
    method: 'GET',
    route: `${ACCOUNTS}/:accountName`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: storage(
        `/subscriptions/${sub}/resourceGroups/${ACCOUNT_RG}/providers/Microsoft.Storage/storageAccounts/${ACCOUNT}`,
      ),
    }),
    ok: [200],
  },
  {
    method: 'GET',
    route: ACCOUNTS,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: storage(
        `/subscriptions/${sub}/resourceGroups/${ACCOUNT_RG}/providers/Microsoft.Storage/storageAccounts`,
      ),
    }),
    ok: [200],
  },
  {
    method: 'GET',
    route: `${SUB}/providers/Microsoft.Storage/storageAccounts`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({
      path: storage(`/subscriptions/${sub}/providers/Microsoft.Storage/storageAccounts`),
    }),
    ok: [200],
  },
  // ---- native API
  {
    method: 'POST',
    route: '/api/v1/subscriptions',
    audience: 'api',
    need: 'Admin',
    scoped: false,
    real: () => ({ path: '/api/v1/subscriptions', body: { displayName: 'intruder' } }),
    ok: [201],
  },
  {
    method: 'GET',
    route: '/api/v1/subscriptions',
    audience: 'api',
    need: 'Any',
    scoped: false,
    real: () => ({ path: '/api/v1/subscriptions' }),
    ok: [200],
  },
  {
    method: 'POST',
    route: `${NATIVE}/tokens`,
    audience: 'api',
    need: 'Owner',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/tokens`, body: { role: 'Owner' } }),
    ok: [201],
  },
  {
    method: 'DELETE',
    route: `${NATIVE}/tokens/:tokenId`,
    audience: 'api',
    need: 'Owner',
    scoped: true,
    real: (s, sub) => ({ path: `/api/v1/subscriptions/${sub}/tokens/${spareOf(s).id}` }),
    fresh: async (s) => ({
      path: `/api/v1/subscriptions/${s.sub}/tokens/${(await newToken(s, 'Reader')).id}`,
    }),
    ok: [204],
  },
  {
    method: 'POST',
    route: `${NATIVE}/enrollmentTokens`,
    audience: 'api',
    need: 'Owner',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/enrollmentTokens`, body: {} }),
    ok: [201],
  },
  {
    method: 'GET',
    route: `${NATIVE}/enrollmentTokens`,
    audience: 'api',
    need: 'Owner',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/enrollmentTokens` }),
    ok: [200],
  },
  {
    method: 'DELETE',
    route: `${NATIVE}/enrollmentTokens/:tokenId`,
    audience: 'api',
    need: 'Owner',
    scoped: true,
    real: (s, sub) => ({
      path: `/api/v1/subscriptions/${sub}/enrollmentTokens/${spareEnrollmentOf(s).id}`,
    }),
    fresh: async (s) => ({
      path: `/api/v1/subscriptions/${s.sub}/enrollmentTokens/${(await newEnrollmentToken(s)).id}`,
    }),
    ok: [204],
  },
  {
    method: 'GET',
    route: `${NATIVE}/agents`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/agents` }),
    ok: [200],
  },
  {
    method: 'GET',
    route: `${NATIVE}/audit`,
    audience: 'api',
    need: 'Owner',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/audit` }),
    ok: [200],
  },
  {
    method: 'POST',
    route: `${NATIVE}/storageAccounts`,
    audience: 'api',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({
      path: `/api/v1/subscriptions/${sub}/storageAccounts`,
      body: { name: ACCOUNT, resourceGroup: ACCOUNT_RG, connectionString: hostileConnection() },
    }),
    fresh: () => ({
      path: `/api/v1/subscriptions/${sideOfFresh().sub}/storageAccounts`,
      body: {
        name: `fresh${next()}`,
        resourceGroup: ACCOUNT_RG,
        connectionString: azurite.connectionString,
      },
    }),
    ok: [201],
  },
  {
    method: 'GET',
    route: `${NATIVE}/storageAccounts`,
    audience: 'api',
    need: 'Reader',
    scoped: true,
    real: (_s, sub) => ({ path: `/api/v1/subscriptions/${sub}/storageAccounts` }),
    ok: [200],
  },
  {
    method: 'DELETE',
    route: `${NATIVE}/storageAccounts/:resourceGroup/:name`,
    audience: 'api',
    need: 'Contributor',
    scoped: true,
    real: (_s, sub) => ({
      path: `/api/v1/subscriptions/${sub}/storageAccounts/${ACCOUNT_RG}/${ACCOUNT}`,
    }),
    fresh: async (s) => ({
      path: `/api/v1/subscriptions/${s.sub}/storageAccounts/${ACCOUNT_RG}/${await newAccount(s)}`,
    }),
    ok: [200],
  },
  // ---- agents
  {
    method: 'POST',
    route: ENROLL_PATH,
    audience: 'enroll',
    need: 'Any',
    scoped: false,
    real: (s) => ({ path: ENROLL_PATH, body: enrollBody(s.sub, 'vm-intruder') }),
    ok: [201],
  },
  {
    // A plain GET with the agent's credential is told to upgrade (400); upgrades: below.
    method: 'GET',
    route: CHANNEL_PATH,
    audience: 'channel',
    need: 'Any',
    scoped: false,
    real: () => ({ path: CHANNEL_PATH }),
    ok: [400],
  },
];

/** Every GET route answers HEAD too (Fastify's exposeHeadRoutes): the same checks, no body. */
type Method = Route['method'] | 'HEAD';
interface Case extends Omit<Route, 'method'> {
  readonly method: Method;
  readonly name: string;
}
const cases: readonly Case[] = routes.flatMap((r) => {
  const name = (m: Method) => `${m} ${r.route.replace(SUB, '').replace(NATIVE, '…') || '/'}`;
  const own: Case = { ...r, name: name(r.method) };
  return r.method === 'GET' ? [own, { ...r, method: 'HEAD' as const, name: name('HEAD') }] : [own];
});

// ---- principals ---------------------------------------------------------------------------

type Principal =
  | { readonly kind: 'admin'; readonly label: string }
  | { readonly kind: 'token'; readonly label: string; readonly side: SideName; readonly role: Role }
  | { readonly kind: 'invalid'; readonly label: string };

const roles: readonly Role[] = ['Reader', 'Contributor', 'Owner'];
const tokenPrincipals = (['A', 'B'] as const).flatMap((s) =>
  roles.map((role) => ({ kind: 'token' as const, label: `${s}'s ${role}`, side: s, role })),
);
const admin: Principal = { kind: 'admin', label: 'the admin token' };
const invalidPrincipals: Principal[] = [
  'no token',
  'a garbage token',
  'a revoked token',
  "an agent's credential",
  'an enrollment token',
].map((label) => ({ kind: 'invalid', label }));
const rank: Record<Need, number> = { Any: 0, Reader: 1, Contributor: 2, Owner: 3, Admin: 4 };

function tokenOf(p: Principal): string {
  switch (p.kind) {
    case 'admin':
      return t.adminToken;
    case 'invalid':
      return invalid.get(p.label)!;
    case 'token': {
      const tenant = side(p.side).tenant;
      return p.role === 'Reader'
        ? tenant.reader
        : p.role === 'Contributor'
          ? tenant.contributor
          : tenant.owner;
    }
  }
}

function send(token: string, c: Case, request: Request): Promise<Reply> {
  return t.call(c.method, request.path, {
    token,
    ...(request.body === undefined ? {} : { body: request.body }),
  });
}

/** The text of an answer with the subscription ids in it replaced, for comparisons. */
function normalized(r: Reply, ...subs: string[]): string {
  let text = r.text;
  for (const sub of subs) text = text.replace(new RegExp(sub, 'gi'), '{subscriptionId}');
  return text;
}

function shape(r: Reply) {
  return {
    status: r.status,
    errorCode: r.headers.get('x-ms-error-code'),
    contentType: r.headers.get('content-type'),
  };
}

/** The error an answer carries: the body for GET/POST/…, the header for HEAD (no body). */
function errorCode(c: Case, r: Reply): string | null {
  if (c.method === 'HEAD') {
    expect(r.text).toBe('');
    return r.headers.get('x-ms-error-code');
  }
  expect(r.headers.get('x-ms-error-code')).toBe(r.body?.error?.code ?? null);
  return (r.body?.error?.code as string | undefined) ?? null;
}

/** Nothing of `victim` in the answer: not its marker, its tokens, its agent's credential. */
function expectNothingOf(victim: Side, r: Reply, request: Request): void {
  const secrets = [
    victim.marker,
    victim.tenant.owner,
    victim.tenant.contributor,
    victim.tenant.reader,
    victim.tenant.enrollToken,
    victim.agent.credential!,
    spareOf(victim).token,
    spareOf(victim).id,
    spareEnrollmentOf(victim).token,
    spareEnrollmentOf(victim).id,
  ];
  // Ids the request itself named may be echoed (e.g. "operation X was not found").
  const visible = [r.text, ...[...r.headers].map(([, v]) => v)].join('\n');
  for (const secret of secrets) {
    if (request.path.includes(secret)) continue;
    expect(visible, `leaks ${secret}`).not.toContain(secret);
  }
}

// ---- fixtures -----------------------------------------------------------------------------

function spareOf(s: Side): { id: string; token: string } {
  return spare.get(s === side('A') ? 'A' : 'B')!;
}

function spareEnrollmentOf(s: Side): { id: string; token: string } {
  return spareEnrollment.get(s === side('A') ? 'A' : 'B')!;
}

async function newEnrollmentToken(s: Side): Promise<{ id: string; token: string }> {
  const r = await t.call('POST', `/api/v1/subscriptions/${s.sub}/enrollmentTokens`, { body: {} });
  expect(r.status, r.text).toBe(201);
  return { id: r.body.tokenId, token: r.body.token };
}

/** A storage account fresh() registers in the side asked last (set by the allowed loop). */
let freshSide: SideName = 'A';
const sideOfFresh = () => side(freshSide);

/** A connection string to an endpoint that would have to be probed: refusals never reach it. */
function hostileConnection(): string {
  return `DefaultEndpointsProtocol=http;AccountName=intruder;AccountKey=${randomBytes(32).toString('base64')};BlobEndpoint=http://127.0.0.1:9/intruder`;
}

function enrollBody(sub: string, name: string) {
  return {
    subscriptionId: sub,
    resourceGroup: RG,
    name,
    location: LOCATION,
    hostname: name,
    captureRoot: '/var/captures',
  };
}

async function newToken(s: Side, role: Role): Promise<{ id: string; token: string }> {
  const r = await t.call('POST', `/api/v1/subscriptions/${s.sub}/tokens`, { body: { role } });
  expect(r.status, r.text).toBe(201);
  return { id: r.body.tokenId, token: r.body.token };
}

async function newCapture(s: Side): Promise<string> {
  const name = `fresh-${next()}`;
  const r = await t.call('PUT', net(pcPath(s.sub, name)), { body: captureBody(s.sub, name) });
  expect(r.status, r.text).toBe(201);
  return name;
}

async function newWatcher(s: Side): Promise<string> {
  const n = next();
  const p = `/subscriptions/${s.sub}/resourceGroups/rg-nw/providers/Microsoft.Network/networkWatchers/nw-del-${n}`;
  const r = await t.call('PUT', net(p), { body: { location: `del${n}` } });
  expect(r.status, r.text).toBe(201);
  return p;
}

async function newAccount(s: Side, name = `fresh${next()}`): Promise<string> {
  const r = await t.call('POST', `/api/v1/subscriptions/${s.sub}/storageAccounts`, {
    body: { name, resourceGroup: ACCOUNT_RG, connectionString: azurite.connectionString },
  });
  expect(r.status, r.text).toBe(201);
  return name;
}

/** Everything a refused request could have changed, read with the admin token. */
async function snapshot(s: Side) {
  const read = async (method: string, p: string) => {
    const r = await t.call(method, p);
    return { status: r.status, body: r.body as unknown };
  };
  const agents = await t.call('GET', `/api/v1/subscriptions/${s.sub}/agents`);
  return {
    capture: await read('GET', net(pcPath(s.sub, MAIN))),
    status: await read('POST', net(`${pcPath(s.sub, MAIN)}/queryStatus`)),
    captures: await read('GET', net(`${nwPath(s.sub)}/packetCaptures`)),
    watchers: await read(
      'GET',
      net(`/subscriptions/${s.sub}/providers/Microsoft.Network/networkWatchers`),
    ),
    accounts: await read('GET', `/api/v1/subscriptions/${s.sub}/storageAccounts`),
    // lastSeen of a connected agent reads "now"; the rest must not move.
    agents: (agents.body.value as Record<string, unknown>[]).map(
      ({ lastSeen: _lastSeen, ...rest }) => rest,
    ),
    audit: await read('GET', `/api/v1/subscriptions/${s.sub}/audit?$top=1000`),
    enrollmentTokens: await read('GET', `/api/v1/subscriptions/${s.sub}/enrollmentTokens`),
    spareWorks: (await t.call('GET', '/api/v1/subscriptions', { token: spareOf(s).token })).status,
    stopsToAgent: s.agent.received.filter((m) => m.type === 'stop' || m.type === 'deregistered')
      .length,
  };
}

let before: Record<SideName, Awaited<ReturnType<typeof snapshot>>>;
let subscriptionsBefore: unknown;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ww-matrix-'));
  azurite = await startAzurite({ dataDir: path.join(dir, 'azurite') });
  // The matrix sends a few thousand requests with a handful of tokens: rate limits off (they
  // have their own tests, test/server/hold-under-attack.test.ts).
  t = await startTestServer({ rateLimit: 0, anonymousRateLimit: 0 }, path.join(dir, 'server'));
  for (const name of ['A', 'B'] as const) {
    const s = await createSide(t, name);
    sides.set(name, s);
    spare.set(name, await newToken(s, 'Owner'));
    spareEnrollment.set(name, await newEnrollmentToken(s));
    await newAccount(s, ACCOUNT);
    expect((await enrollVm(t, s, { scaleSet: SCALE_SET })).instanceId).toBe('0');
  }
  const a = side('A');
  const revoked = await newToken(a, 'Owner');
  const revoke = await t.call('DELETE', `/api/v1/subscriptions/${a.sub}/tokens/${revoked.id}`, {
    token: a.tenant.owner,
  });
  expect(revoke.status).toBe(204);
  invalid.set('no token', '');
  invalid.set('a garbage token', `wwt_${randomUUID().replace(/-/g, '')}garbage`);
  invalid.set('a revoked token', revoked.token);
  invalid.set("an agent's credential", a.agent.credential!);
  invalid.set('an enrollment token', a.tenant.enrollToken);

  before = { A: await snapshot(a), B: await snapshot(side('B')) };
  subscriptionsBefore = (await t.call('GET', '/api/v1/subscriptions')).body;
});

afterAll(async () => {
  for (const s of sides.values()) await s.agent.close();
  await t?.close();
  await azurite?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

// ---- the table covers the server ----------------------------------------------------------

describe('the matrix covers every route the server registers', () => {
  const key = (r: RegisteredRoute) => `${r.method} ${r.url.toLowerCase()}`;

  it('every registered (method, route) has a row, and every row is a registered route', () => {
    const registered = registeredRoutes(t.server.app).map(key).sort();
    const covered = cases.map((c) => key({ method: c.method, url: c.route })).sort();
    expect(registered.length).toBeGreaterThan(30);
    // A new route fails here until it has a row in `routes` (with its least role and its
    // success status); a row for a route that no longer exists fails too.
    expect(covered).toEqual(registered);
  });

  it("every row's request really hits its route", () => {
    const a = side('A');
    for (const c of cases) {
      const p = c.real(a, a.sub).path.split('?')[0]!;
      expect(p, c.name).toMatch(routeRegExp(c.route));
      // …and no other row's route: the table's requests are unambiguous.
      const others = routes.filter(
        (r) => r.route !== c.route && routeRegExp(r.route).test(p) && r.method === c.method,
      );
      expect(others.map((r) => r.route)).toEqual([]);
    }
  });
});

// ---- refusals -----------------------------------------------------------------------------

describe('refused: credentials that are not API tokens → 401', () => {
  for (const p of invalidPrincipals) {
    for (const c of cases.filter((x) => x.audience === 'api')) {
      it(`${p.label}: ${c.name} → 401 AuthenticationFailed`, async () => {
        const a = side('A');
        const r = await send(tokenOf(p), c, c.real(a, a.sub));
        expect(r.status, r.text).toBe(401);
        expect(errorCode(c, r)).toBe('AuthenticationFailed');
      });
    }
  }
});

describe("refused: another tenant's subscription reads as one that does not exist → 404", () => {
  for (const p of tokenPrincipals) {
    for (const c of cases.filter((x) => x.scoped)) {
      it(`${p.label}: ${c.name} of the other tenant → 404 SubscriptionNotFound`, async () => {
        const victim = side(other(p.side));
        const request = c.real(victim, victim.sub);
        const foreign = await send(tokenOf(p), c, request);
        const madeUp = randomUUID();
        const missing = await send(tokenOf(p), c, c.real(victim, madeUp));
        expect(foreign.status, foreign.text).toBe(404);
        expect(errorCode(c, foreign)).toBe('SubscriptionNotFound');
        expect(shape(foreign)).toEqual(shape(missing));
        expect(normalized(foreign, victim.sub)).toBe(normalized(missing, madeUp));
        expectNothingOf(victim, foreign, request);
      });
    }
  }

  for (const c of cases.filter((x) => x.scoped)) {
    it(`the admin token: ${c.name} of a subscription that does not exist → the same 404`, async () => {
      const a = side('A');
      const madeUp = randomUUID();
      const r = await send(t.adminToken, c, c.real(a, madeUp));
      const asTenant = await send(tokenOf(tokenPrincipals[2]!), c, c.real(a, madeUp));
      expect(r.status).toBe(404);
      expect(errorCode(c, r)).toBe('SubscriptionNotFound');
      expect(shape(r)).toEqual(shape(asTenant));
      expect(normalized(r, madeUp)).toBe(normalized(asTenant, madeUp));
    });
  }
});

describe('refused: too weak a role → 403 AuthorizationFailed', () => {
  for (const p of tokenPrincipals) {
    for (const c of cases.filter((x) => x.audience === 'api' && rank[x.need] > rank[p.role])) {
      it(`${p.label}: ${c.name} (needs ${c.need}) → 403`, async () => {
        const own = side(p.side);
        const r = await send(tokenOf(p), c, c.real(own, own.sub));
        expect(r.status, r.text).toBe(403);
        expect(errorCode(c, r)).toBe('AuthorizationFailed');
      });
    }
  }
});

describe('refused: agent routes take only their own credentials', () => {
  const apiCallers = [...tokenPrincipals.filter((p) => p.side === 'A'), admin];
  const enroll = cases.find((c) => c.audience === 'enroll')!;
  const channel = cases.filter((c) => c.audience === 'channel');

  for (const p of [
    ...apiCallers,
    ...invalidPrincipals.filter((x) => x.label !== 'an enrollment token'),
  ]) {
    it(`${p.label}: ${enroll.name} → 401 InvalidEnrollmentToken`, async () => {
      const a = side('A');
      const r = await send(tokenOf(p), enroll, enroll.real(a, a.sub));
      expect(r.status, r.text).toBe(401);
      expect(errorCode(enroll, r)).toBe('InvalidEnrollmentToken');
    });
  }

  it(`A's enrollment token: ${enroll.name} into B → 401 InvalidEnrollmentToken`, async () => {
    const b = side('B');
    const r = await send(side('A').tenant.enrollToken, enroll, enroll.real(b, b.sub));
    expect(r.status, r.text).toBe(401);
    expect(errorCode(enroll, r)).toBe('InvalidEnrollmentToken');
    // The refusal names the field that differs, and nothing of B.
    expect(r.text).toContain('subscriptionId');
    expect(r.text).not.toContain(b.sub);
  });

  for (const c of channel) {
    for (const p of [
      ...apiCallers,
      ...invalidPrincipals.filter((x) => x.label !== "an agent's credential"),
    ]) {
      it(`${p.label}: ${c.name} → 401 AuthenticationFailed`, async () => {
        const r = await send(tokenOf(p), c, c.real(side('A'), side('A').sub));
        expect(r.status, r.text).toBe(401);
        expect(errorCode(c, r)).toBe('AuthenticationFailed');
      });
    }
  }

  for (const p of [
    ...apiCallers,
    ...invalidPrincipals.filter((x) => x.label !== "an agent's credential"),
  ]) {
    it(`${p.label}: a WebSocket upgrade of the agent channel → 401`, async () => {
      expect(await channelUpgrade(tokenOf(p))).toBe(401);
    });
  }
});

describe('refused requests changed nothing', () => {
  for (const name of ['A', 'B'] as const) {
    it(`${name}'s capture, watcher, VM, storage account, tokens and audit log are as they were`, async () => {
      const now = await snapshot(side(name));
      expect(now).toEqual(before[name]);
      expect(now.status.body).toMatchObject({
        packetCaptureStatus: 'Running',
        agentConnectionState: 'Connected',
      });
      expect(now.spareWorks).toBe(200);
      expect(now.stopsToAgent).toBe(0);
    });
  }

  it('no subscription was created', async () => {
    expect((await t.call('GET', '/api/v1/subscriptions')).body).toEqual(subscriptionsBefore);
  });
});

// ---- allowed ------------------------------------------------------------------------------

describe('allowed: enough role → success, and nothing of the other tenant in the answer', () => {
  for (const p of tokenPrincipals) {
    for (const c of cases.filter((x) => x.audience === 'api' && rank[x.need] <= rank[p.role])) {
      it(`${p.label}: ${c.name} → ${c.ok.join('/')}`, async () => {
        const own = side(p.side);
        freshSide = p.side;
        const request = c.fresh ? await c.fresh(own) : c.real(own, own.sub);
        const r = await send(tokenOf(p), c, request);
        expect(c.ok, `${r.status} ${r.text}`).toContain(r.status);
        const victim = side(other(p.side));
        expectNothingOf(victim, r, request);
        expect(r.text).not.toContain(victim.sub);
        if (c.route === '/api/v1/subscriptions' && c.method === 'GET') {
          expect(r.body.value.map((v: { subscriptionId: string }) => v.subscriptionId)).toEqual([
            own.sub,
          ]);
        }
      });
    }
  }

  for (const c of cases.filter((x) => x.audience === 'api' || x.audience === 'open')) {
    for (const name of c.scoped ? (['A', 'B'] as const) : (['A'] as const)) {
      it(`the admin token: ${c.name}${c.scoped ? ` of ${name}` : ''} → ${c.ok.join('/')}`, async () => {
        const s = side(name);
        freshSide = name;
        const request = c.fresh ? await c.fresh(s) : c.real(s, s.sub);
        const r = await send(t.adminToken, c, request);
        expect(c.ok, `${r.status} ${r.text}`).toContain(r.status);
        if (c.scoped) expectNothingOf(side(other(name)), r, request);
      });
    }
  }

  for (const c of cases.filter((x) => x.audience === 'open')) {
    for (const p of [...tokenPrincipals, ...invalidPrincipals]) {
      it(`${p.label}: ${c.name} → ${c.ok.join('/')}`, async () => {
        const r = await send(tokenOf(p), c, c.real(side('A'), side('A').sub));
        expect(c.ok).toContain(r.status);
        if (c.method === 'GET') expect(r.body).toEqual({ status: 'ok' });
      });
    }
  }

  it('an enrollment token enrolls into its own subscription → 201', async () => {
    const a = side('A');
    const enroll = cases.find((c) => c.audience === 'enroll')!;
    const r = await send(a.tenant.enrollToken, enroll, {
      path: ENROLL_PATH,
      body: enrollBody(a.sub, `vm-enrolled-${next()}`),
    });
    expect(r.status, r.text).toBe(201);
    expectNothingOf(side('B'), r, { path: ENROLL_PATH });
  });

  for (const c of cases.filter((x) => x.audience === 'channel')) {
    it(`an agent's credential: ${c.name} without an upgrade → 400 InvalidRequestContent`, async () => {
      const r = await send(side('A').agent.credential!, c, c.real(side('A'), side('A').sub));
      expect(r.status, r.text).toBe(400);
      expect(errorCode(c, r)).toBe('InvalidRequestContent');
    });
  }

  it("an agent's credential upgrades the agent channel → 101", async () => {
    const vm = await enrollVm(t, side('A'), `vm-channel-${next()}`);
    expect(await channelUpgrade(vm.credential)).toBe(101);
  });
});

describe('between tenants: ids inside bodies', () => {
  it("a capture stored in B's storage account reads as an account that does not exist", async () => {
    const a = side('A');
    const b = side('B');
    const accountId = (sub: string) =>
      `/subscriptions/${sub}/resourceGroups/${ACCOUNT_RG}/providers/Microsoft.Storage/storageAccounts/${ACCOUNT}`;
    const put = (sub: string) =>
      t.call('PUT', net(pcPath(a.sub, 'pc-foreign-account')), {
        token: a.tenant.contributor,
        body: {
          properties: {
            ...captureBody(a.sub, 'x').properties,
            storageLocation: { storageId: accountId(sub) },
          },
        },
      });
    const madeUp = randomUUID();
    const foreign = await put(b.sub);
    const missing = await put(madeUp);
    expect(foreign.status, foreign.text).toBe(400);
    expect(foreign.body.error).toMatchObject({
      code: 'StorageAccountNotFound',
      target: 'properties.storageLocation.storageId',
    });
    expect(shape(foreign)).toEqual(shape(missing));
    expect(normalized(foreign, b.sub)).toBe(normalized(missing, madeUp));
    expectNothingOf(b, foreign, { path: '' });
    expect((await t.call('GET', net(pcPath(a.sub, 'pc-foreign-account')))).status).toBe(404);
  });
});

describe('allowed: subscription ids compare case-insensitively', () => {
  for (const c of cases.filter((x) => x.scoped && x.method === 'GET')) {
    it(`A's Owner: ${c.name} with the subscription id in capitals → the same answer`, async () => {
      const a = side('A');
      const owner = side('A').tenant.owner;
      const upper = await send(owner, c, c.real(a, a.sub.toUpperCase()));
      expect(upper.status, upper.text).toBe(c.ok[0]);
      const lower = await send(owner, c, c.real(a, a.sub));
      // A connected agent's lastSeen reads "now"; a nextLink repeats the path as asked.
      const strip = (text: string) => text.replace(/"(lastSeen|nextLink)":"[^"]*"/g, '"$1":…');
      expect(strip(upper.text)).toBe(strip(lower.text));
    });
  }
});

const channelUpgrade = (token: string) => upgradeStatus(t.url, CHANNEL_PATH, token);
