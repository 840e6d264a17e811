/**
 * The OpenAPI 3.1 document served at /docs/json is complete and valid: every route is documented
 * (summary, tags, success and error responses), every path parameter is declared, every schema in it
 * compiles as JSON Schema 2020-12 (the dialect of OpenAPI 3.1), every `$ref` resolves, the problem
 * schema lists exactly the server's error codes, and the docs UI is self-hosted. A route added without
 * a schema fails here.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { openTestDb, type TestDb } from '../support/db.js';
import { startServer, type TestServer } from '../support/server.js';
import { ERROR_CODES } from '../../src/errors.js';

type Json = Record<string, unknown>;
interface Operation {
  summary?: string;
  tags?: string[];
  security?: Array<Record<string, unknown>>;
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: Json }>;
  requestBody?: { content?: Record<string, { schema?: Json; example?: unknown; examples?: unknown }> };
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: Json }> }>;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Routes that are public by design and answer no documented 4xx of their own. */
const NO_ERROR_RESPONSES = new Set(['GET /healthz', 'GET /robots.txt', 'GET /.well-known/jwks.json', 'GET /.well-known/oauth-authorization-server', 'OPTIONS /v1/uploads', 'OPTIONS /v1/uploads/{id}', 'GET /readyz']);

describe('OpenAPI document', () => {
  let t: TestDb;
  let s: TestServer;
  let doc: Json & { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Json>; securitySchemes: Record<string, Json> } };
  const ops: Array<{ id: string; path: string; method: string; op: Operation }> = [];

  before(async () => {
    t = await openTestDb('pglite');
    s = await startServer(t.db);
    const res = await fetch(`${s.url}/docs/json`);
    assert.equal(res.status, 200);
    doc = (await res.json()) as typeof doc;
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) if (METHODS.includes(method)) ops.push({ id: `${method.toUpperCase()} ${path}`, path, method, op });
    }
  });
  after(async () => {
    await s.close();
    await t.close();
  });

  test('is an OpenAPI 3.1 document naming the API, its server and the bearer scheme', () => {
    assert.equal(doc.openapi, '3.1.0');
    const info = doc.info as Json;
    assert.ok(typeof info.title === 'string' && typeof info.version === 'string');
    assert.ok(Array.isArray(doc.servers) && (doc.servers as Json[]).length > 0);
    assert.equal(doc.components.securitySchemes.bearerAuth?.type, 'http');
    assert.equal(doc.components.securitySchemes.bearerAuth?.scheme, 'bearer');
    assert.ok(ops.length >= 40, `${ops.length} operations`);
  });

  test('every operation has a summary, tags and a documented success response', () => {
    const bad = ops.filter(({ op }) => !op.summary || !op.tags?.length || !Object.keys(op.responses ?? {}).some((c) => /^[23]/.test(c)));
    assert.deepEqual(bad.map((o) => o.id), []);
    const undescribed = ops.flatMap(({ id, op }) => Object.entries(op.responses ?? {}).filter(([, r]) => !r.description).map(([c]) => `${id} ${c}`));
    assert.deepEqual(undescribed, []);
  });

  test('every authenticated operation documents its 401 and 403 problems, every other one its errors', () => {
    const missing: string[] = [];
    for (const { id, op } of ops) {
      const codes = Object.keys(op.responses ?? {});
      if (op.security?.length) {
        for (const s of op.security) for (const name of Object.keys(s)) assert.ok(name in doc.components.securitySchemes, `${id}: unknown security scheme ${name}`);
        for (const c of ['401', '403']) if (!codes.includes(c)) missing.push(`${id} ${c}`);
      } else if (!NO_ERROR_RESPONSES.has(id) && !codes.some((c) => c.startsWith('4'))) {
        missing.push(`${id} 4xx`);
      }
    }
    assert.deepEqual(missing, []);
  });

  test('every path template parameter is declared, required and typed', () => {
    const problems: string[] = [];
    for (const { id, path, op } of ops) {
      for (const m of path.matchAll(/\{([^}]+)\}/g)) {
        const name = m[1]!;
        if (name === '*') continue;
        const p = op.parameters?.find((x) => x.in === 'path' && x.name === name);
        if (!p || p.required !== true || !p.schema) problems.push(`${id}: {${name}}`);
      }
      for (const p of op.parameters ?? []) if (!p.schema) problems.push(`${id}: ${p.in} ${p.name} has no schema`);
    }
    assert.deepEqual(problems, []);
  });

  test('every schema in the document compiles as JSON Schema 2020-12 and every $ref resolves', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: false });
    // Every component is addressable as `<name>#` (the problem schema, the per-operation schemas).
    for (const [name, schema] of Object.entries(doc.components.schemas)) ajv.addSchema({ ...schema, $id: name });
    const refs: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          if (k === '$ref' && typeof x === 'string') refs.push(x);
          else walk(x);
        }
      }
    };
    walk(doc.paths);
    const unresolved = [...new Set(refs)].filter((r) => {
      if (!r.startsWith('#/')) return true;
      let node: unknown = doc;
      for (const part of r.slice(2).split('/')) node = (node as Json | undefined)?.[decodeURIComponent(part.replace(/~1/g, '/').replace(/~0/g, '~'))];
      return node === undefined;
    });
    assert.deepEqual(unresolved, []);

    const failures: string[] = [];
    const check = (where: string, schema: Json | undefined) => {
      if (!schema) return;
      try {
        // Local refs point into the document: compile with the document's components alongside.
        ajv.compile({ ...JSON.parse(JSON.stringify(schema).replace(/"#\/components\/schemas\/([A-Za-z0-9_.-]+)"/g, '"$1#"')) });
      } catch (err) {
        failures.push(`${where}: ${(err as Error).message}`);
      }
    };
    for (const { id, op } of ops) {
      for (const p of op.parameters ?? []) check(`${id} ${p.in} ${p.name}`, p.schema);
      for (const [type, c] of Object.entries(op.requestBody?.content ?? {})) check(`${id} body ${type}`, c.schema);
      for (const [code, r] of Object.entries(op.responses ?? {})) for (const [type, c] of Object.entries(r.content ?? {})) check(`${id} ${code} ${type}`, c.schema);
    }
    assert.deepEqual(failures, []);
  });

  test('the problem schema lists exactly the server error codes, with examples', () => {
    const problem = doc.components.schemas.Problem as { properties: Record<string, { enum?: string[]; examples?: unknown[] }>; required: string[] };
    assert.deepEqual([...(problem.properties.code!.enum ?? [])].sort(), Object.keys(ERROR_CODES).sort());
    for (const f of ['type', 'title', 'status', 'detail', 'code']) assert.ok(problem.properties[f]!.examples?.length, `${f} has an example`);
    assert.deepEqual([...problem.required].sort(), ['code', 'detail', 'request_id', 'status', 'title', 'type']);
  });

  test('every error response carries a problem+json example whose code that status really has (not one example for all)', () => {
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const { id, op } of ops) {
      for (const [status, r] of Object.entries(op.responses ?? {})) {
        if (Number(status) < 400) continue;
        // The token endpoint answers RFC 6749 §5.2 errors, not problem+json.
        if (!Object.values(r.content ?? {}).some((c) => JSON.stringify(c.schema ?? {}).includes('Problem'))) continue;
        const media = (r.content ?? {})['application/problem+json'] as { examples?: Record<string, { value?: { code?: string; status?: number } }> } | undefined;
        const examples = Object.values(media?.examples ?? {});
        if (!examples.length) {
          problems.push(`${id} ${status}: no problem+json example`);
          continue;
        }
        for (const ex of examples) {
          const code = ex.value?.code as keyof typeof ERROR_CODES | undefined;
          seen.add(String(code));
          if (!code || !(code in ERROR_CODES) || ex.value?.status !== Number(status)) problems.push(`${id} ${status}: example ${code} has status ${ex.value?.status}`);
          if (!r.description?.includes(String(code))) problems.push(`${id} ${status}: example ${code} is not among the codes the response names`);
        }
      }
    }
    assert.deepEqual(problems, []);
    // Many different codes appear, not one copied everywhere.
    assert.ok(seen.size >= 10, `only ${seen.size} distinct example codes`);
  });

  test('request bodies document their examples where the API reference shows them', (ctx) => {
    // Reported, not enforced: a checklist for the API reference (issue 6, item 1).
    const without = ops.filter(({ op }) => {
      const media = op.requestBody?.content?.['application/json'];
      return media?.schema && media.example === undefined && media.examples === undefined && !JSON.stringify(media.schema).includes('"examples"');
    });
    ctx.diagnostic(`JSON request bodies without examples: ${without.map((o) => o.id).join(', ') || 'none'}`);
    assert.ok(without.length < ops.length);
  });

  test('the docs UI is served from this server, with no third-party assets', async () => {
    const res = await fetch(`${s.url}/docs/`, { redirect: 'follow' });
    assert.equal(res.status, 200);
    const html = await res.text();
    const external = [...html.matchAll(/(?:src|href)=["'](https?:)?\/\/[^"']+/g)].map((m) => m[0]);
    assert.deepEqual(external, []);
  });
});
