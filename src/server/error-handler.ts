import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { WirewatchError } from '../model/errors.js';

interface ValidationIssue {
  readonly instancePath: string;
  readonly keyword: string;
  readonly message?: string;
  readonly params: Record<string, unknown>;
}

/** `/properties/filters/0/protocol` → `properties.filters[0].protocol`. */
export function fieldName(instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').filter(Boolean);
  if (extra) parts.push(extra);
  let out = '';
  for (const part of parts) {
    const decoded = part.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(decoded) ? `[${decoded}]` : out === '' ? decoded : `.${decoded}`;
  }
  return out;
}

function fromValidation(issues: readonly ValidationIssue[], context: string): WirewatchError {
  const issue = issues[0]!;
  const missing =
    issue.keyword === 'required' && typeof issue.params['missingProperty'] === 'string'
      ? issue.params['missingProperty']
      : undefined;
  const target = fieldName(issue.instancePath, missing) || context;
  let rule = missing ? 'is required' : (issue.message ?? 'is not valid');
  if (issue.keyword === 'enum' && Array.isArray(issue.params['allowedValues'])) {
    rule = `must be one of ${(issue.params['allowedValues'] as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return new WirewatchError('InvalidRequestContent', `${target}: ${rule}`, { target });
}

/**
 * Turns anything thrown in a route into Azure's error body. WirewatchErrors keep their code;
 * Fastify's own errors (bad JSON, too large, wrong media type, schema violations) get ours;
 * anything else is a 500 whose message names only the request id — the cause goes to the log.
 */
export function toWirewatchError(err: unknown, request: FastifyRequest): WirewatchError {
  if (err instanceof WirewatchError) return err;
  const e = err as FastifyError & { validation?: ValidationIssue[]; validationContext?: string };
  if (Array.isArray(e.validation) && e.validation.length > 0) {
    return fromValidation(e.validation, e.validationContext ?? 'body');
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new WirewatchError('RequestBodyTooLarge', 'The request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new WirewatchError(
        'UnsupportedMediaType',
        `Content-Type ${JSON.stringify(request.headers['content-type'] ?? '')} is not supported; send application/json`,
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new WirewatchError('InvalidRequestContent', 'body: the JSON body is empty', {
        target: 'body',
      });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new WirewatchError('InvalidRequestContent', 'Content-Length does not match the body');
    default:
      break;
  }
  if (e instanceof SyntaxError || e.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return new WirewatchError('InvalidRequestContent', `body: not valid JSON (${e.message})`, {
      target: 'body',
    });
  }
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    return new WirewatchError('InvalidRequestContent', e.message);
  }
  return new WirewatchError(
    'InternalServerError',
    `An internal error occurred (request id ${String(request.id)})`,
  );
}

export function sendError(reply: FastifyReply, err: WirewatchError): FastifyReply {
  return reply.code(err.status).header('x-ms-error-code', err.code).send(err.toBody());
}
