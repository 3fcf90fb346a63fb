import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { storageAccountResourceId } from '../../control/storage-accounts.js';
import { CreateStorageAccountSchema, type CreateStorageAccountInput } from '../../model/arm.js';
import type { StorageAccountRecord } from '../../store/store.js';
import { authorize } from '../auth.js';
import { callerOf, principalOf, type ServerContext } from '../context.js';

/** Storage accounts have no region in wirewatch; ARM bodies say this. */
export const STORAGE_ACCOUNT_LOCATION = 'local';

const NATIVE = '/api/v1/subscriptions/:subscriptionId/storageAccounts';
const SUB = '/subscriptions/:subscriptionId';
const ACCOUNTS = `${SUB}/resourceGroups/:resourceGroupName/providers/Microsoft.Storage/storageAccounts`;

interface SubParams {
  subscriptionId: string;
}

interface AccountParams extends SubParams {
  resourceGroupName: string;
  accountName: string;
}

/** One entry of the native list: what was registered, minus the connection string. */
export function storageAccountView(a: StorageAccountRecord): Record<string, unknown> {
  return {
    id: storageAccountResourceId(a.subscriptionId, a.resourceGroup, a.name),
    name: a.name,
    resourceGroup: a.resourceGroup,
    accountName: a.accountName,
    blobEndpoint: a.blobEndpoint,
    createdAt: a.createdAt.toISOString(),
  };
}

/** Azure's Microsoft.Storage StorageAccount, the fields wirewatch knows. */
export function storageAccountArmView(a: StorageAccountRecord): Record<string, unknown> {
  return {
    id: storageAccountResourceId(a.subscriptionId, a.resourceGroup, a.name),
    name: a.name,
    type: 'Microsoft.Storage/storageAccounts',
    location: STORAGE_ACCOUNT_LOCATION,
    kind: 'StorageV2',
    tags: {},
    properties: {
      provisioningState: 'Succeeded',
      creationTime: a.createdAt.toISOString(),
      primaryEndpoints: { blob: `${a.blobEndpoint}/` },
    },
  };
}

/**
 * Storage accounts (docs/api.md "Storage accounts"): registered through the native API with a
 * connection string, read the ARM way (Microsoft.Storage/storageAccounts). The connection string
 * holds the account key: it is stored, used to mint SAS tokens, and never shown — not in any
 * answer, audit entry or log line.
 */
export const storageAccountRoutes: FastifyPluginAsync<ServerContext> = async (app, ctx) => {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const { control } = ctx;
  const accounts = control.storageAccounts;

  api.post<{ Params: SubParams; Body: CreateStorageAccountInput }>(
    NATIVE,
    { schema: { body: CreateStorageAccountSchema }, config: { need: 'Contributor' } },
    async (request, reply) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Contributor');
      const { record, created } = await accounts.put(
        {
          subscriptionId: request.params.subscriptionId.toLowerCase(),
          resourceGroup: request.body.resourceGroup,
          name: request.body.name,
          connectionString: request.body.connectionString,
        },
        callerOf(request),
      );
      return reply.code(created ? 201 : 200).send(storageAccountView(record));
    },
  );

  api.get<{ Params: SubParams }>(NATIVE, async (request) => {
    await authorize(control, principalOf(request), request.params.subscriptionId, 'Reader');
    const list = await accounts.list(request.params.subscriptionId.toLowerCase());
    return { value: list.map(storageAccountView) };
  });

  api.delete<{ Params: SubParams & { resourceGroup: string; name: string } }>(
    `${NATIVE}/:resourceGroup/:name`,
    { config: { need: 'Contributor' } },
    async (request, reply) => {
      const p = request.params;
      await authorize(control, principalOf(request), p.subscriptionId, 'Contributor');
      const subscriptionId = p.subscriptionId.toLowerCase();
      const deleted = await accounts.delete(
        subscriptionId,
        p.resourceGroup,
        p.name,
        callerOf(request),
      );
      return reply.code(deleted ? 200 : 204).send();
    },
  );

  api.get<{ Params: AccountParams }>(`${ACCOUNTS}/:accountName`, async (request) => {
    const p = request.params;
    await authorize(control, principalOf(request), p.subscriptionId, 'Reader');
    const account = await accounts.get(
      p.subscriptionId.toLowerCase(),
      p.resourceGroupName,
      p.accountName,
    );
    return storageAccountArmView(account);
  });

  api.get<{ Params: Omit<AccountParams, 'accountName'> }>(ACCOUNTS, async (request) => {
    const p = request.params;
    await authorize(control, principalOf(request), p.subscriptionId, 'Reader');
    const list = await accounts.list(p.subscriptionId.toLowerCase(), p.resourceGroupName);
    return { value: list.map(storageAccountArmView) };
  });

  api.get<{ Params: SubParams }>(
    `${SUB}/providers/Microsoft.Storage/storageAccounts`,
    async (request) => {
      await authorize(control, principalOf(request), request.params.subscriptionId, 'Reader');
      const list = await accounts.list(request.params.subscriptionId.toLowerCase());
      return { value: list.map(storageAccountArmView) };
    },
  );
};
