/**
 * Error examples in the OpenAPI document. Every error response of every operation gets its own
 * `application/problem+json` example whose `status` is that response's status and whose `code` is
 * one the response's description names (the codes that route really returns), instead of one
 * generic example shown under every status (issue 9, item 14). Applied as @fastify/swagger's
 * `transformObject`, so routes keep declaring errors once, in `errorResponses()`.
 */
import { ERROR_CODES, type ErrorCode } from '../errors.js';
import { titleOf } from './problem.js';

type Json = Record<string, any>;

const CODE = /\bERR_[A-Z0-9_]+\b/g;

/** A placeholder detail: the real messages name the cause and the fix. */
function exampleDetail(code: ErrorCode): string {
  return `What went wrong and how to fix it (${code}).`;
}

/**
 * The codes a response description names, preferring those whose usual status is the response's
 * status; a code the description names for another status is used when it names no other.
 */
export function codesForResponse(description: string | undefined, status: number): ErrorCode[] {
  const named = [...new Set(String(description ?? '').match(CODE) ?? [])].filter((c): c is ErrorCode => c in ERROR_CODES);
  const usual = named.filter((c) => ERROR_CODES[c] === status);
  return usual.length ? usual : named;
}

function isProblemSchema(schema: Json | undefined): boolean {
  return typeof schema?.$ref === 'string' && /(^|\/)Problem#?$/.test(schema.$ref);
}

/** Rewrites every error response (4xx/5xx) in `doc` to carry a matching problem+json example. */
export function addProblemExamples(doc: Json): Json {
  for (const methods of Object.values<Json>(doc.paths ?? {})) {
    for (const op of Object.values<Json>(methods)) {
      for (const [statusText, response] of Object.entries<Json>(op?.responses ?? {})) {
        const status = Number(statusText);
        if (!(status >= 400) || !response) continue;
        const codes = codesForResponse(response.description, status);
        const code = codes[0];
        const media = response.content?.['application/json'] ?? response.content?.['application/problem+json'];
        if (!media || !code || !isProblemSchema(media.schema)) continue;
        response.content = {
          'application/problem+json': {
            ...media,
            examples: Object.fromEntries(
              codes.map((c) => [
                c,
                { summary: c, value: { type: `urn:obscura:error:${c}`, title: titleOf(status), status, detail: exampleDetail(c), code: c, request_id: '6f1c2b1e-8a3d-4e52-9b0a-2f1d3c4b5a69' } },
              ]),
            ),
          },
        };
      }
    }
  }
  return doc;
}
