import { describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { DEVELOPMENT_ACCOUNT, parseConnectionString } from './connection-string.js';

const KEY = 'c2VjcmV0LWtleS1vZi10aGUtdGVzdC1hY2NvdW50LTAxMjM0NTY3ODk=';

/** The error parseConnectionString throws for `text`. */
function failure(text: string): WirewatchError {
  try {
    parseConnectionString(text);
  } catch (err) {
    expect(err).toBeInstanceOf(WirewatchError);
    return err as WirewatchError;
  }
  throw new Error(`parsed: ${text}`);
}

describe('parseConnectionString', () => {
  it('builds the endpoint from protocol, account and the default suffix', () => {
    expect(
      parseConnectionString(
        `DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=${KEY};EndpointSuffix=core.windows.net`,
      ),
    ).toEqual({
      accountName: 'acct1',
      accountKey: KEY,
      blobEndpoint: 'https://acct1.blob.core.windows.net',
      protocol: 'https',
    });
    expect(
      parseConnectionString(`DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=${KEY}`)
        .blobEndpoint,
    ).toBe('https://acct1.blob.core.windows.net');
  });

  it('uses another EndpointSuffix (sovereign clouds)', () => {
    expect(
      parseConnectionString(
        `DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=${KEY};EndpointSuffix=core.chinacloudapi.cn`,
      ).blobEndpoint,
    ).toBe('https://acct1.blob.core.chinacloudapi.cn');
  });

  it('takes BlobEndpoint as given, without a trailing slash, its protocol from the URL', () => {
    const a = parseConnectionString(
      `DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=${KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;`,
    );
    expect(a).toEqual({
      accountName: 'devstoreaccount1',
      accountKey: KEY,
      blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
      protocol: 'http',
    });
    expect(
      parseConnectionString(
        `AccountName=acct1;AccountKey=${KEY};BlobEndpoint=https://acct1.blob.example.net`,
      ),
    ).toMatchObject({ blobEndpoint: 'https://acct1.blob.example.net', protocol: 'https' });
  });

  it('reads keys case-insensitively, tolerates spaces, empty parts and other services', () => {
    const a = parseConnectionString(
      ` defaultendpointsprotocol=HTTPS ; accountname=acct1;;ACCOUNTKEY=${KEY}; QueueEndpoint=https://q.example;`,
    );
    expect(a).toMatchObject({ accountName: 'acct1', accountKey: KEY, protocol: 'https' });
  });

  it('keeps the = signs at the end of the key', () => {
    expect(
      parseConnectionString(`AccountName=a1;AccountKey=${KEY};BlobEndpoint=http://h:1/a1`),
    ).toHaveProperty('accountKey', KEY);
  });

  it('UseDevelopmentStorage=true is Azurite’s development account', () => {
    expect(parseConnectionString('UseDevelopmentStorage=true')).toEqual(DEVELOPMENT_ACCOUNT);
    expect(parseConnectionString('UseDevelopmentStorage=true;')).toEqual({
      accountName: 'devstoreaccount1',
      accountKey:
        'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
      blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
      protocol: 'http',
    });
  });

  const cases: [string, string, RegExp][] = [
    ['empty', '', /is empty/],
    ['blank', '  ;; ', /is empty/],
    ['no Key=Value', 'hello', /Key=Value/],
    ['a part without a key', `=x;AccountName=a1;AccountKey=${KEY}`, /no key/],
    [
      'an unknown part',
      `DefaultEndpointsProtocol=https;AccountName=a1;AccountKey=${KEY};Colour=blue`,
      /unknown part 'Colour'/,
    ],
    ['a repeated part', `AccountName=a1;AccountName=a2;AccountKey=${KEY}`, /AccountName.*twice/],
    [
      'no AccountName',
      `DefaultEndpointsProtocol=https;AccountKey=${KEY}`,
      /AccountName is missing/,
    ],
    [
      'a bad AccountName',
      `DefaultEndpointsProtocol=https;AccountName=Bad_Name;AccountKey=${KEY}`,
      /AccountName must be/,
    ],
    ['no AccountKey', 'DefaultEndpointsProtocol=https;AccountName=a1', /AccountKey is missing/],
    [
      'a SAS connection string',
      'BlobEndpoint=https://a1.blob.core.windows.net;SharedAccessSignature=sv=2020&sig=abc',
      /SharedAccessSignature connection strings are not accepted/,
    ],
    [
      'an empty AccountKey',
      'DefaultEndpointsProtocol=https;AccountName=a1;AccountKey=',
      /AccountKey is missing/,
    ],
    [
      'an AccountKey that is not base64',
      'DefaultEndpointsProtocol=https;AccountName=a1;AccountKey=not*base64!',
      /AccountKey is not base64/,
    ],
    [
      'no protocol and no endpoint',
      `AccountName=a1;AccountKey=${KEY}`,
      /DefaultEndpointsProtocol is missing/,
    ],
    [
      'a bad protocol',
      `DefaultEndpointsProtocol=ftp;AccountName=a1;AccountKey=${KEY}`,
      /DefaultEndpointsProtocol must be http or https/,
    ],
    [
      'a BlobEndpoint that is not a URL',
      `AccountName=a1;AccountKey=${KEY};BlobEndpoint=not a url`,
      /BlobEndpoint is not a URL/,
    ],
    [
      'a BlobEndpoint that is not http(s)',
      `AccountName=a1;AccountKey=${KEY};BlobEndpoint=ftp://host/a1`,
      /BlobEndpoint must be an http/,
    ],
    [
      'a BlobEndpoint with a query',
      `AccountName=a1;AccountKey=${KEY};BlobEndpoint=https://host/a1?sv=1`,
      /BlobEndpoint must not carry/,
    ],
    [
      'a bad EndpointSuffix',
      `DefaultEndpointsProtocol=https;AccountName=a1;AccountKey=${KEY};EndpointSuffix=a..b`,
      /EndpointSuffix is not a DNS name/,
    ],
    ['UseDevelopmentStorage=false', 'UseDevelopmentStorage=false', /must be true/],
    [
      'UseDevelopmentStorage with account parts',
      `UseDevelopmentStorage=true;AccountName=a1;AccountKey=${KEY}`,
      /cannot be combined/,
    ],
  ];

  for (const [label, text, message] of cases) {
    it(`refuses ${label}: InvalidConnectionString naming the part, never the key`, () => {
      const err = failure(text);
      expect(err.code).toBe('InvalidConnectionString');
      expect(err.status).toBe(400);
      expect(err.target).toBe('connectionString');
      expect(err.message).toMatch(/^connectionString: /);
      expect(err.message).toMatch(message);
      expect(err.message).not.toContain(KEY);
      expect(err.message).not.toContain(KEY.slice(0, 12));
      if (text.trim() !== '') expect(err.message).not.toContain(text);
      expect(JSON.stringify(err.toBody())).not.toContain(KEY.slice(0, 12));
    });
  }

  it('does not quote a key pasted where a part name should be', () => {
    const err = failure(`${KEY};AccountName=a1`);
    expect(err.message).not.toContain(KEY.slice(0, 12));
    expect(err.message).toMatch(/unknown part number 1/);
  });
});
