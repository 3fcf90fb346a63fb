/**
 * Runs one operation of the official Azure SDK (@azure/arm-network) against a wirewatch server
 * and prints one JSON line: { result } or { error }, plus `raw` (the raw body of the last
 * response, for fields the SDK's models drop) and `trace` (every HTTP exchange the SDK made).
 *
 *   WW_URL=https://127.0.0.1:PORT WW_TOKEN=… WW_SUBSCRIPTION=… \
 *   NODE_EXTRA_CA_CERTS=DIR/tls/ca.crt node test/sdk/sdk-driver.mjs SCENARIO 'ARGS-JSON'
 *
 * NODE_EXTRA_CA_CERTS is read only at process start, hence a process of its own.
 */
import { NetworkManagementClient } from '@azure/arm-network';

const [scenario, argsJson = '{}'] = process.argv.slice(2);
const args = JSON.parse(argsJson);
const url = required('WW_URL');
const subscriptionId = required('WW_SUBSCRIPTION');
const token = required('WW_TOKEN');

/** A TokenCredential handing out the wirewatch API token as the bearer token. */
const credential = {
  getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3600_000 }),
};

const client = new NetworkManagementClient(credential, subscriptionId, {
  endpoint: url,
  $host: url,
  credentialScopes: [`${url}/.default`],
  // One attempt per request: a test wants to see the server's answer, not the retries.
  retryOptions: { maxRetries: 0 },
});

const trace = [];
client.pipeline.addPolicy({
  name: 'wirewatchTrace',
  async sendRequest(request, next) {
    const response = await next(request);
    trace.push({
      method: request.method,
      url: request.url,
      status: response.status,
      headers: pick(response.headers, ['location', 'azure-asyncoperation', 'retry-after']),
      body: response.bodyAsText ?? undefined,
    });
    return response;
  },
});

let raw;
const onResponse = (response) => {
  raw = response.parsedBody ?? response.bodyAsText;
};
const poll = { updateIntervalInMs: 200 };
const pc = client.packetCaptures;
const { rg, nw, name } = args;

const scenarios = {
  create: () => pc.beginCreateAndWait(rg, nw, name, args.parameters, poll),
  get: () => pc.get(rg, nw, name, { onResponse }),
  status: () => pc.beginGetStatusAndWait(rg, nw, name, { ...poll, onResponse }),
  list: async () => {
    const names = [];
    for await (const capture of pc.list(rg, nw)) names.push(capture.name);
    return names;
  },
  stop: () => pc.beginStopAndWait(rg, nw, name, poll),
  delete: () => pc.beginDeleteAndWait(rg, nw, name, poll),
  watcherGet: () => client.networkWatchers.get(rg, nw),
  watchersListAll: async () => {
    const watchers = [];
    for await (const watcher of client.networkWatchers.listAll()) watchers.push(watcher);
    return watchers;
  },
};

const run = scenarios[scenario];
if (!run) {
  process.stderr.write(`unknown scenario ${scenario}; one of ${Object.keys(scenarios)}\n`);
  process.exit(2);
}
let output;
try {
  output = { result: (await run()) ?? null };
} catch (err) {
  output = {
    error: {
      name: err?.name,
      code: err?.code,
      statusCode: err?.statusCode,
      message: err?.message,
    },
  };
}
process.stdout.write(`${JSON.stringify({ ...output, raw, trace })}\n`);

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

function pick(headers, names) {
  const out = {};
  for (const n of names) {
    const v = headers.get(n);
    if (v !== undefined) out[n] = v;
  }
  return out;
}
