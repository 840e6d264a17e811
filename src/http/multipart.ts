/**
 * `multipart/form-data` request bodies (`curl -F file=@photo.jpg`, HTML forms) for the routes that
 * take a file: `POST /v1/assets` and `POST /v1/process` (issue 9, item 9).
 *
 * Parsed as a stream by @fastify/multipart (busboy): the file part is handed on as a stream, so it is
 * sniffed, limited, hashed and encrypted exactly like a raw body, never buffered whole or written to
 * a temporary file. One shape for both routes, which is what lets the file stream straight through:
 * text fields first, then exactly one file part named `file`, and nothing after it. Anything else —
 * no file, a second file, a field after the file, an unknown or repeated field, too many parts, an
 * oversized field, a malformed body — is a 4xx with a stable code, and the route stores nothing
 * (the asset route commits only after {@link Form.end} has seen the body end).
 */
import { PassThrough, type Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { AppError } from '../errors.js';

/** The name of the one file part. */
export const FILE_FIELD = 'file';

/** Largest text field value (operations are at most 4 KiB; the rest are short). */
export const MAX_FORM_FIELD_BYTES = 16 * 1024;

/**
 * Room for the multipart framing and the text fields around the file, when a declared
 * Content-Length is compared with a route's file-size limit before reading anything.
 */
export const MULTIPART_OVERHEAD_BYTES = 64 * 1024;

/** The file part of a form. */
export interface FormFile {
  /** The file's bytes, as they arrive. Read it to the end (or destroy it) before calling `end()`. */
  stream: Readable;
  /** The part's `filename` parameter, if the client sent one. */
  filename: string | undefined;
}

/** A form read up to its file part. */
export interface Form {
  /** The text fields that came before the file (names checked against the route's list). */
  fields: Record<string, string>;
  file: FormFile;
  /**
   * Reads what follows the file part; throws a 4xx AppError when anything does (a second file, a
   * field after the file) or the body is malformed. Callers store or answer only after it resolved.
   */
  end(): Promise<void>;
}

type Part = Awaited<ReturnType<ReturnType<FastifyRequest['parts']>['next']>>['value'];

/**
 * Registers the multipart parser on an encapsulated scope, so only that scope's routes accept
 * `multipart/form-data` (a JSON route sent a form keeps answering 415). The plugin reads nothing by
 * itself; the route reads the form with {@link readForm}.
 */
export async function installMultipart(scope: FastifyInstance): Promise<void> {
  await scope.register(multipart, {
    // The file-size limit is the route's own (its ingest limiter answers 413 with the limit); these
    // bound everything around the file.
    limits: { fieldNameSize: 100, fieldSize: MAX_FORM_FIELD_BYTES, headerPairs: 20 },
    throwFileSizeLimit: false,
  });
  // The form is read in the handler, as a stream, and checked there. Schema validation sees only a
  // placeholder for the file, so the route's multipart body schema (published in OpenAPI, where it
  // gives Swagger UI's file picker and marks `file` required) describes the form without refusing it.
  scope.addHook('preValidation', async (req) => {
    if (req.isMultipart()) req.body = { [FILE_FIELD]: '' };
  });
}

/** Maps @fastify/multipart and busboy errors to our codes; never echoes their text. */
export function formError(err: unknown, allowed: readonly string[]): AppError {
  if (err instanceof AppError) return err;
  const code = (err as { code?: string } | undefined)?.code;
  switch (code) {
    case 'FST_FILES_LIMIT':
      return new AppError('ERR_VALIDATION', `Send exactly one file per request, in a part named "${FILE_FIELD}".`, { details: { field: FILE_FIELD, limit: 1 } });
    case 'FST_FIELDS_LIMIT':
    case 'FST_PARTS_LIMIT':
      return new AppError('ERR_VALIDATION', `Too many form parts: at most one of each of ${fieldList(allowed)}, then the "${FILE_FIELD}" part.`, {
        details: { allowed_fields: [...allowed], limit: allowed.length + 1 },
      });
    case 'FST_PROTO_VIOLATION':
    case 'FST_INVALID_JSON_FIELD_ERROR':
      return new AppError('ERR_VALIDATION', `The form has a field that is not accepted here; send only ${fieldList(allowed)} and the "${FILE_FIELD}" part.`, { details: { allowed_fields: [...allowed] } });
    case 'FST_MP_PREMATURE_CLOSE':
      return new AppError('ERR_BAD_REQUEST', 'The multipart body ended before its closing boundary; send the whole form.');
    default:
      return new AppError('ERR_BAD_REQUEST', 'The multipart/form-data body is malformed: send a well-formed form with a boundary (as curl -F or a browser FormData sends it).', { cause: err });
  }
}

function fieldList(allowed: readonly string[]): string {
  return allowed.length ? allowed.map((f) => `"${f}"`).join(', ') : 'no text field';
}

async function nextPart(parts: AsyncIterableIterator<NonNullable<Part>>, allowed: readonly string[]): Promise<NonNullable<Part> | null> {
  try {
    const r = await parts.next();
    return r.done ? null : r.value;
  } catch (err) {
    throw formError(err, allowed);
  }
}

/** Discards a part's file stream that will not be used (the reply says why). */
function dropFile(part: NonNullable<Part>): void {
  if (part.type === 'file') part.file.destroy();
}

/**
 * Reads a form up to its file part: the text fields (only `fields`, each at most once), then the
 * part named `file`. `maxFileBytes` is the route's limit; busboy stops one byte past it, so the
 * route's own limiter sees the overflow and answers 413 with the limit.
 */
export async function readForm(req: FastifyRequest, spec: { fields: readonly string[]; maxFileBytes: number }): Promise<Form> {
  const allowed = spec.fields;
  const parts = req.parts({ limits: { fileSize: spec.maxFileBytes + 1, files: 1, fields: allowed.length, parts: allowed.length + 1 } }) as AsyncIterableIterator<NonNullable<Part>>;
  const fields: Record<string, string> = {};
  for (;;) {
    const part = await nextPart(parts, allowed);
    if (part === null) {
      throw new AppError('ERR_BAD_REQUEST', `The form has no file: send it in a part named "${FILE_FIELD}" (curl -F ${FILE_FIELD}=@photo.jpg).`, { details: { field: FILE_FIELD } });
    }
    if (part.type === 'file') {
      if (part.fieldname !== FILE_FIELD) {
        dropFile(part);
        throw new AppError('ERR_VALIDATION', `The file must be sent in a part named "${FILE_FIELD}", not "${safeName(part.fieldname)}".`, { details: { field: FILE_FIELD } });
      }
      return {
        fields,
        file: { stream: clientErrors(part.file, allowed), filename: part.filename || undefined },
        end: async () => {
          const after = await nextPart(parts, allowed);
          if (after === null) return;
          dropFile(after);
          // Fields come first so the file can stream straight to the store; accepting one after it
          // would mean holding the file until the form ends.
          throw new AppError('ERR_VALIDATION', `Nothing may follow the "${FILE_FIELD}" part: put the text fields before it and send one file per request.`, {
            details: { field: after.fieldname === FILE_FIELD ? FILE_FIELD : safeName(after.fieldname) },
          });
        },
      };
    }
    const name = part.fieldname;
    if (name === FILE_FIELD) {
      throw new AppError('ERR_VALIDATION', `The "${FILE_FIELD}" part must be a file (curl -F ${FILE_FIELD}=@photo.jpg, or an <input type="file"> in a form).`, { details: { field: FILE_FIELD } });
    }
    if (!allowed.includes(name)) {
      throw new AppError('ERR_VALIDATION', `Unknown form field "${safeName(name)}"; accepted: ${fieldList(allowed)} and the "${FILE_FIELD}" part.`, { details: { field: safeName(name), allowed_fields: [...allowed] } });
    }
    if (Object.hasOwn(fields, name)) throw new AppError('ERR_VALIDATION', `The form field "${name}" is sent twice; send it once.`, { details: { field: name } });
    if (part.valueTruncated || part.fieldnameTruncated) {
      throw new AppError('ERR_VALIDATION', `The form field "${name}" is longer than ${MAX_FORM_FIELD_BYTES} bytes.`, { details: { field: name, limit: MAX_FORM_FIELD_BYTES } });
    }
    fields[name] = String(part.value);
  }
}

/**
 * The file part as the route reads it: a malformed or cut-off body surfaces on the file stream as a
 * parser error, which becomes our 400 here (not a 500 in the route); a consumer that stops reading
 * (a refused type) stops the part too.
 */
function clientErrors(file: Readable, allowed: readonly string[]): Readable {
  const out = new PassThrough({ highWaterMark: 64 * 1024 });
  // The body may fail before the route starts reading (it is still checking the app): the error is
  // kept on the stream (`errored`) and seen by whoever reads it, never thrown as uncaught.
  out.on('error', () => undefined);
  file.on('error', (err) => out.destroy(formError(err, allowed)));
  out.on('close', () => {
    if (!file.readableEnded) file.destroy();
  });
  file.pipe(out);
  return out;
}

/** A client-chosen part name, made safe to quote in an error (bounded, printable). */
function safeName(name: string): string {
  return String(name).replace(/[^\x20-\x7e]/g, '?').slice(0, 64);
}

/**
 * After a refused form, the rest of the request may still be arriving. The reply closes the
 * connection (the unread bytes cannot be parsed as a next request); a bounded amount is read first so
 * a well-behaved client sees the answer rather than a reset.
 */
export function refuseUnreadForm(req: FastifyRequest, reply: FastifyReply): void {
  const raw = req.raw;
  if (raw.complete) return;
  reply.header('Connection', 'close');
  if (raw.listenerCount('data') > 0) return;
  let drained = 0;
  raw.on('data', (c: Buffer) => {
    drained += c.length;
    if (drained > 1024 * 1024) raw.destroy();
  });
  raw.on('error', () => undefined);
  raw.resume();
}
