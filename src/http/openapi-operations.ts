/**
 * Per-operation schemas in the OpenAPI document (issue 9, item 11): one `components.schemas.Operation_<name>`
 * per registry entry, generated from the entry's own schema, and every JSON operation step of a request
 * body (`POST /v1/process`, `POST /v1/jobs`, presets) pointing to them (`anyOf`: image and video
 * operations share some names, and the input's kind decides). Applied as @fastify/swagger's `transformObject`, so the document is generated from the registry
 * while request validation stays the registry's (its errors name the allowed values; Ajv's would not).
 */
import { OPERATION_LIST } from '../media/image/operations/registry.js';
import { VIDEO_OPERATION_LIST } from '../media/video/operations.js';
import { operationJsonSchema } from '../media/describe.js';

type Json = Record<string, any>;

/** The `title` that marks the JSON operation step in route schemas (src/http/routes/jobs.ts). */
export const OPERATION_STEP_TITLE = 'OperationStep';

/** Adds the per-operation schemas to `doc` and points every operation step at them. */
export function addOperationSchemas(doc: Json): Json {
  const schemas: Json = (doc.components ??= {}).schemas ??= {};
  const refs: Json[] = [];
  for (const def of OPERATION_LIST) {
    const ref = `#/components/schemas/Operation_${def.name}`;
    schemas[`Operation_${def.name}`] = operationJsonSchema(def);
    refs.push({ $ref: ref });
  }
  // Video operations share some names with image ones (trim, crop, rotate, format…): which one applies
  // depends on the input's media kind, so the step is `anyOf` both lists, with no discriminator.
  const videoRefs: Json[] = [];
  for (const def of VIDEO_OPERATION_LIST) {
    schemas[`VideoOperation_${def.name}`] = operationJsonSchema(def);
    videoRefs.push({ $ref: `#/components/schemas/VideoOperation_${def.name}` });
  }
  const step = {
    title: OPERATION_STEP_TITLE,
    description: 'One operation in the JSON form: an image operation (Operation_*) for an image input, a video operation (VideoOperation_*) for a video input; see GET /v1/operations or docs/operations.md.',
    anyOf: [...refs, ...videoRefs],
  };
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (!node || typeof node !== 'object') return node;
    if ((node as Json).title === OPERATION_STEP_TITLE) return step;
    for (const [k, v] of Object.entries(node as Json)) (node as Json)[k] = walk(v);
    return node;
  };
  walk(doc.paths);
  return doc;
}
