/**
 * `GET /v1/operations`: the operation reference, generated from the registry (the same data as
 * docs/operations.md and the OpenAPI `Operation_<name>` schemas).
 *
 * Public by design: it describes what this server version accepts and reveals nothing of any tenant
 * (no presets, no limits of an app), so Swagger UI, SDK generators and CDNs can fetch and cache it
 * without a credential. An app's presets are listed, with a credential, by
 * `GET /v1/apps/{id}/transform-presets`.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { OPERATION_REFERENCE } from '../../media/image/operations/registry.js';
import { CONTAINERS, VIDEO_OPERATION_REFERENCE } from '../../media/video/operations.js';
import { findVideoTools } from '../../media/video/ffmpeg.js';
import { availableCodecs } from '../../media/video/pipeline.js';

const Parameter = Type.Object(
  {
    name: Type.String(),
    type: Type.Union([Type.Literal('integer'), Type.Literal('number'), Type.Literal('boolean'), Type.Literal('enum'), Type.Literal('colour'), Type.Literal('string')]),
    required: Type.Boolean(),
    primary: Type.Boolean({ description: 'The bare value of the string form binds to this parameter (`rotate:90`).' }),
    description: Type.Optional(Type.String()),
    default: Type.Optional(Type.Unknown()),
    minimum: Type.Optional(Type.Number()),
    maximum: Type.Optional(Type.Number()),
    exclusive_minimum: Type.Optional(Type.Number()),
    values: Type.Optional(Type.Array(Type.String(), { description: 'Allowed values of an enum.' })),
    value_aliases: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Other accepted spellings of values (`jpg` → `jpeg`).' })),
    pattern: Type.Optional(Type.String()),
    min_length: Type.Optional(Type.Integer()),
    max_length: Type.Optional(Type.Integer()),
  },
  { additionalProperties: false },
);

const RegistryFields = {
    operations: Type.Array(
      Type.Object(
        {
          name: Type.String(),
          aliases: Type.Array(Type.String()),
          description: Type.String(),
          parameters: Type.Array(Parameter),
          repeatable: Type.Boolean(),
          reads_assets: Type.Boolean({ description: 'Names another asset (watermark): also needs the `assets:read` scope.' }),
          any_position: Type.Boolean({ description: 'A setting that may be written anywhere; every other operation must follow `pipeline_order`.' }),
          device: Type.Boolean({ description: 'Also runs on the device (the browser SDK, wasm-vips) with the same output size and format; false: server only (refused on the device with ERR_VALIDATION, reason not_on_device).' }),
        },
        { additionalProperties: false },
      ),
    ),
    pipeline_order: Type.Array(Type.String(), { description: 'Position-sensitive operations must be written in this order; another order is refused (400, reason order_changed), never reordered.' }),
    max_operations: Type.Integer(),
    max_length: Type.Integer({ description: 'Longest string form, in characters.' }),
};

const OperationReferenceSchema = Type.Object(
  {
    ...RegistryFields,
    video: Type.Object(
      {
        ...RegistryFields,
        available: Type.Boolean({ description: 'False when this server has no ffmpeg: video work then answers 503 ERR_VIDEO_UNAVAILABLE.' }),
        codecs: Type.Object({ video: Type.Array(Type.String()), audio: Type.Array(Type.String()) }, { additionalProperties: false, description: 'What the installed ffmpeg can encode (format codec= and audio_codec=).' }),
        containers: Type.Record(Type.String(), Type.Object({ codecs: Type.Array(Type.String()), audio: Type.Array(Type.String()) }, { additionalProperties: false }), { description: 'Which codecs each output container may carry.' }),
        ffmpeg: Type.Union([Type.String(), Type.Null()], { description: 'The ffmpeg version, or null.' }),
      },
      { additionalProperties: false, description: 'The video operations (inputs sniffed as MP4, QuickTime or WebM).' },
    ),
  },
  { additionalProperties: false },
);

/** Registers `GET /v1/operations` (public, cacheable). */
export function operationRoutes(app: FastifyInstance, video: { ffmpegPath: string; ffprobePath: string }): void {
  const tools = findVideoTools(video);
  const body = JSON.stringify({
    ...OPERATION_REFERENCE,
    video: {
      ...VIDEO_OPERATION_REFERENCE,
      available: tools !== null,
      codecs: availableCodecs(tools),
      containers: Object.fromEntries(Object.entries(CONTAINERS).map(([name, c]) => [name, { codecs: [...c.codecs], audio: [...c.audio] }])),
      ffmpeg: tools?.version ?? null,
    },
  });
  app.get('/v1/operations', {
    // Deliberately no `config.auth`: a public reference with no tenant data (see the module comment;
    // listed as public in test/http/scopes.test.ts).
    schema: {
      tags: ['processing'],
      summary: 'The operation reference: every operation, its parameters, types, ranges, defaults and aliases (public)',
      description: 'Generated from the operation registry; the same as docs/operations.md. Public and cacheable: no credential needed, nothing tenant-specific (an app\'s presets: `GET /v1/apps/{id}/transform-presets`).',
      response: { 200: OperationReferenceSchema, 429: { $ref: 'Problem#', description: 'Rate limited (ERR_RATE_LIMITED).' } as never },
    },
    handler: async (_req, reply) => {
      // Changes only with the server version: let browsers and CDNs keep it for an hour.
      reply.header('Cache-Control', 'public, max-age=3600').type('application/json; charset=utf-8');
      return reply.send(body);
    },
  });
}
