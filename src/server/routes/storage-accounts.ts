import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { StorageAccountClient } from '../../blob/storage-account.js';
import { checkResourceGroupName } from '../../control/resource-ids.js';
import { CreateStorageAccountSchema, type CreateStorageAccountInput } from '../../model/arm.js';
import { WirewatchError } from '../../model/errors.js';
import type { StorageAccountRecord } from '../../store/store.js';
import { authorize } from '../auth.js';
import { principalOf, type ServerContext, auditRequest } from '../context.js';

/** Azure's storage account name rule: 3–24 lower-case letters and digits. */
const STORAGE_ACCOUNT_NAME = /^[a-z0-9]{3,24}$/;

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

export function storageAccountResourceId(
  subscriptionId: string,
  resourceGroup: string,
  name: string,
): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Storage/storageAccounts/${name}`;
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
  const { store } = ctx;

  const audit = (
    request: FastifyRequest,
    subscriptionId: string,
    action: string,
    resourceId: string,
    detail: Record<string, unknown> = {},
  ) => auditRequest(store, request, { subscriptionId, action, resourceId, detail });

  api.post<{ Params: SubParams; Body: CreateStorageAccountInput }>(
    NATIVE,
    { schema: { body: CreateStorageAccountSchema }, config: { need: 'Contributor' } },
    async (request, reply) => {
      await authorize(store, principalOf(request), request.params.subscriptionId, 'Contributor');
      const subscriptionId = request.params.subscriptionId.toLowerCase();
      const { name, resourceGroup, connectionString } = request.body;
      if (!STORAGE_ACCOUNT_NAME.test(name)) {
        throw new WirewatchError(
          'InvalidResourceName',
          `name: ${JSON.stringify(name.slice(0, 64))} is not a valid storage account name: 3 to 24 lower-case letters and digits`,
          { target: 'name' },
        );
      }
      checkResourceGroupName(resourceGroup, 'resourceGroup');
      // Parses the string (InvalidConnectionString) and proves endpoint and key work.
      const client = new StorageAccountClient(connectionString);
      await client.ensureContainer();
      const { record, created } = await store.putStorageAccount({
        subscriptionId,
        resourceGroup,
        name,
        accountName: client.accountName,
        blobEndpoint: client.blobEndpoint,
        connectionString,
        createdAt: new Date(),
      });
      await audit(
        request,
        subscriptionId,
        created ? 'storageAccount.create' : 'storageAccount.update',
        storageAccountResourceId(subscriptionId, record.resourceGroup, record.name),
        { accountName: record.accountName, blobEndpoint: record.blobEndpoint },
      );
      return reply.code(created ? 201 : 200).send(storageAccountView(record));
    },
  );

  api.get<{ Params: SubParams }>(NATIVE, async (request) => {
    await authorize(store, principalOf(request), request.params.subscriptionId, 'Reader');
    const accounts = await store.listStorageAccounts(request.params.subscriptionId.toLowerCase());
    return { value: accounts.map(storageAccountView) };
  });

  api.delete<{ Params: SubParams & { resourceGroup: string; name: string } }>(
    `${NATIVE}/:resourceGroup/:name`,
    { config: { need: 'Contributor' } },
    async (request, reply) => {
      const p = request.params;
      await authorize(store, principalOf(request), p.subscriptionId, 'Contributor');
      const subscriptionId = p.subscriptionId.toLowerCase();
      const existing = await store.getStorageAccount(subscriptionId, p.resourceGroup, p.name);
      if (!existing) return reply.code(204).send();
      await store.deleteStorageAccount(subscriptionId, p.resourceGroup, p.name);
      await audit(
        request,
        subscriptionId,
        'storageAccount.delete',
        storageAccountResourceId(subscriptionId, existing.resourceGroup, existing.name),
        { accountName: existing.accountName, blobEndpoint: existing.blobEndpoint },
      );
      return reply.code(200).send();
    },
  );

  api.get<{ Params: AccountParams }>(`${ACCOUNTS}/:accountName`, async (request) => {
    const p = request.params;
    await authorize(store, principalOf(request), p.subscriptionId, 'Reader');
    const account = await store.getStorageAccount(
      p.subscriptionId.toLowerCase(),
      p.resourceGroupName,
      p.accountName,
    );
    if (!account) {
      throw new WirewatchError(
        'ResourceNotFound',
        `Storage account '${p.accountName}' was not found in resource group '${p.resourceGroupName}'`,
        { target: 'accountName' },
      );
    }
    return storageAccountArmView(account);
  });

  api.get<{ Params: Omit<AccountParams, 'accountName'> }>(ACCOUNTS, async (request) => {
    const p = request.params;
    await authorize(store, principalOf(request), p.subscriptionId, 'Reader');
    const group = p.resourceGroupName.toLowerCase();
    const accounts = await store.listStorageAccounts(p.subscriptionId.toLowerCase());
    return {
      value: accounts
        .filter((a) => a.resourceGroup.toLowerCase() === group)
        .map(storageAccountArmView),
    };
  });

  api.get<{ Params: SubParams }>(
    `${SUB}/providers/Microsoft.Storage/storageAccounts`,
    async (request) => {
      await authorize(store, principalOf(request), request.params.subscriptionId, 'Reader');
      const accounts = await store.listStorageAccounts(request.params.subscriptionId.toLowerCase());
      return { value: accounts.map(storageAccountArmView) };
    },
  );
};
