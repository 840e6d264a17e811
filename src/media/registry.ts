/**
 * The operation-registry mechanism every media kind shares: the operations grammar (two spellings),
 * validation of each entry's parameters against its schema, the canonical form, and the plan (steps in
 * pipeline order; an order the pipeline would change is refused, never silently applied). A media kind
 * declares its entries (`OperationDef` typed to its own pipeline, e.g. sharp for images) and calls
 * {@link createRegistry} once; nothing here knows any operation by name.
 *
 * ## Two spellings of the same operations
 *
 * JSON (API bodies, jobs): an array of objects, `[{ "op": "resize", "width": 400 }, { "op": "format", "type": "webp" }]`.
 *
 * String (transform URLs `/t/{sig}/{ops}/{asset}`, the CLI `--op`):
 * ```
 * ops    = op *( "/" op )
 * op     = name [ ":" params ]
 * params = item *( "," item )
 * item   = key "=" value        ; the FIRST item may be a bare value, bound to the operation's
 *        / value                ;   primary parameter: rotate:90, format:webp, blur:2, tint:%23ff0000
 * name, key = ALPHA *( ALPHA / DIGIT )
 * value  = 1*( any character except "/" and "," )   ; percent-decoded after splitting
 * ```
 * Example: `resize:width=400,fit=cover/format:webp,quality=80`. A `/`, `,` or `%` inside a value (text
 * overlays) and `#` in a colour (in URLs) must be percent-encoded (`%2F`, `%2C`, `%25`, `%23`).
 * Numbers are decimal (`-12`, `0.5`), booleans `true`/`false`; nothing else is coerced.
 *
 * Whichever spelling is used, every operation and parameter is validated against its schema before
 * any byte is decoded; unknown operations and parameters are refused (AppError `ERR_VALIDATION`, 400,
 * `details.operation` names the operation). The order written does not matter: {@link buildPlan}
 * sorts by each operation's `order`.
 */
import type { TSchema } from 'typebox';
import Value from 'typebox/value';
import { AppError } from '../errors.js';
import { allowedPhrase, buildReference, describeValue, type OperationReference, type ParameterDescription } from './describe.js';
import type { OperationDef } from './operation.js';

export type { OperationDef };

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOperation = OperationDef<any, any, any>;

export interface ParsedOperation {
  readonly name: string;
  readonly args: Readonly<Record<string, unknown>>;
}

const NAME = /^[A-Za-z][A-Za-z0-9]{0,31}$/;
/** Parameter names may also hold `_` (video `format:audio_codec=opus`). */
const PARAMETER_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

function invalid(operation: string | null, details: Record<string, unknown>, index?: number): AppError {
  const label = operation === null ? 'operations' : `operation "${operation}"`;
  return new AppError('ERR_VALIDATION', `Invalid ${label}.`, {
    details: { operation, ...(index !== undefined ? { index } : {}), ...details },
  });
}

function schemaProperties(schema: TSchema): Record<string, TSchema> {
  return ((schema as { properties?: Record<string, TSchema> }).properties ?? {}) as Record<string, TSchema>;
}

/** A value as shown back in an error: short, and never more than 64 characters of user text. */
function shown(value: unknown): unknown {
  if (typeof value === 'string') return value.slice(0, 64);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return value;
  return typeof value;
}

/** One invalid parameter: what was given and what is allowed (from the entry's own schema). */
function parameterError(def: AnyOperation, parameter: string, args: Record<string, unknown>): { parameter: string; message: string; allowed: Omit<ParameterDescription, 'name' | 'required' | 'primary'>; got?: unknown } {
  const schema = schemaProperties(def.schema)[parameter] as Record<string, unknown>;
  const allowed = describeValue(schema);
  const aliases = def.valueAliases?.[parameter];
  if (aliases) allowed.value_aliases = { ...aliases };
  if (!Object.hasOwn(args, parameter)) return { parameter, message: `${parameter} is required: ${allowedPhrase(allowed)}`, allowed };
  const got = shown(args[parameter]);
  return { parameter, message: `${parameter} must be ${allowedPhrase(allowed)}; got ${JSON.stringify(got)}`, allowed, got };
}

function requiredOf(schema: TSchema): string[] {
  return ((schema as { required?: string[] }).required ?? []) as string[];
}

function coerce(schema: TSchema | undefined, raw: string): unknown {
  const s = schema as { type?: unknown; anyOf?: Array<{ const?: unknown }> } | undefined;
  // A choice among numbers (video `rotate:90`) is typed by its members, not by the union.
  const type = s?.anyOf?.length && s.anyOf.every((m) => typeof m.const === 'number') ? 'number' : s?.type;
  if (type === 'integer' && /^[+-]?\d{1,15}$/.test(raw)) return Number(raw);
  if (type === 'number' && /^[+-]?(?:\d{1,15}(?:\.\d{1,15})?|\.\d{1,15})$/.test(raw)) return Number(raw);
  if (type === 'boolean' && (raw === 'true' || raw === 'false')) return raw === 'true';
  return raw;
}

function decode(value: string, operation: string, index: number): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw invalid(operation, { reason: 'invalid_encoding' }, index);
  }
}

/** Canonical string form of validated operations (sorted keys, percent-encoded values). */
export function serializeOperations(ops: readonly ParsedOperation[]): string {
  return ops
    .map((op) => {
      const keys = Object.keys(op.args).sort();
      if (keys.length === 0) return op.name;
      return `${op.name}:${keys.map((k) => `${k}=${encodeURIComponent(String(op.args[k]))}`).join(',')}`;
    })
    .join('/');
}

/** One step of a plan: the entry and its validated parameters. */
export interface PlanStep<D extends AnyOperation = AnyOperation> {
  readonly operation: D;
  readonly args: Readonly<Record<string, unknown>>;
}

/** Validated operations in pipeline order. */
export interface Plan<D extends AnyOperation = AnyOperation> {
  readonly steps: readonly PlanStep<D>[];
}

/** A media kind's registry: its entries and the grammar, validation and planning bound to them. */
export interface Registry<D extends AnyOperation> {
  /** Every operation, in pipeline order. */
  readonly list: readonly D[];
  /** Lookup by name and alias. */
  readonly byName: ReadonlyMap<string, D>;
  readonly maxOperations: number;
  readonly maxLength: number;
  /** Parses either spelling into validated operations. @throws AppError `ERR_VALIDATION` naming the operation and parameter. */
  parse(input: unknown): ParsedOperation[];
  /** Orders validated operations into a plan. @throws AppError `ERR_VALIDATION` (duplicate, unknown, order_changed). */
  plan(ops: readonly ParsedOperation[]): Plan<D>;
  /** The published reference (`GET /v1/operations`, docs/operations.md). */
  readonly reference: OperationReference;
}

/**
 * Builds a registry over `entries` (any order; the plan orders them by `order`).
 * @throws Error at startup for two entries sharing a name or alias (a programming error).
 */
export function createRegistry<D extends AnyOperation>(entries: readonly D[], limits: { maxOperations: number; maxLength: number }): Registry<D> {
  const MAX_OPERATIONS = limits.maxOperations;
  const MAX_OPERATIONS_LENGTH = limits.maxLength;
  const list: readonly D[] = Object.freeze([...entries].sort((a, b) => a.order - b.order));
  const OPERATIONS = new Map<string, D>();
  for (const op of list) {
    for (const n of [op.name, ...(op.aliases ?? [])]) {
      if (OPERATIONS.has(n)) throw new Error(`operation name "${n}" is declared twice`);
      OPERATIONS.set(n, op);
    }
  }
  const OPERATION_NAMES: readonly string[] = Object.freeze([...list.map((o) => o.name), ...list.flatMap((o) => o.aliases ?? [])]);

  /** Every position-sensitive operation, in the order the pipeline applies them (for error messages and docs). */
  const PIPELINE_ORDER = [...list]
    .filter((o) => !o.anyPosition)
    .sort((a, b) => a.order - b.order)
    .map((o) => o.name)
    .join(', ');
  /** Validates one operation's name and parameters; returns it with its canonical name. */
  function validate(name: unknown, given: Record<string, unknown>, index: number): ParsedOperation {
    if (typeof name !== 'string' || !NAME.test(name)) throw invalid(null, { reason: 'invalid_operation_name' }, index);
    const def = OPERATIONS.get(name);
    if (!def) {
      throw new AppError('ERR_VALIDATION', `Unknown operation "${name}": use one of ${OPERATION_NAMES.join(', ')} (GET /v1/operations lists them with their parameters).`, {
        details: { operation: name, index, reason: 'unknown_operation', allowed: OPERATION_NAMES },
      });
    }
    const properties = schemaProperties(def.schema);
    const unknown = Object.keys(given).filter((k) => !Object.hasOwn(properties, k));
    if (unknown.length > 0) {
      const allowed = Object.keys(properties);
      const names = unknown.slice(0, 5).map((k) => k.slice(0, 32));
      throw new AppError('ERR_VALIDATION', `Unknown parameter ${names.map((k) => `"${k}"`).join(', ')} for operation "${def.name}": ${allowed.length ? `it takes ${allowed.join(', ')}` : 'it takes no parameters'}.`, {
        details: { operation: def.name, index, reason: 'unknown_parameter', parameters: names, allowed },
      });
    }
    // Value aliases the entry declares (`format:jpg`) become the schema's own value before validation.
    const args: Record<string, unknown> = { ...given };
    for (const [parameter, aliases] of Object.entries(def.valueAliases ?? {})) {
      const v = args[parameter];
      if (typeof v === 'string' && Object.hasOwn(aliases, v)) args[parameter] = aliases[v];
    }
    if (!Value.Check(def.schema, args)) {
      const errors: Array<ReturnType<typeof parameterError>> = [];
      for (const e of Value.Errors(def.schema, args)) {
        const missing = (e as { params?: { requiredProperties?: string[] } }).params?.requiredProperties;
        const parameters = e.instancePath ? [e.instancePath.replace(/^\//, '').split('/')[0]!] : (missing ?? Object.keys(properties).filter((k) => !Object.hasOwn(args, k) && requiredOf(def.schema).includes(k)));
        for (const parameter of parameters) {
          if (!Object.hasOwn(properties, parameter) || errors.some((x) => x.parameter === parameter)) continue;
          errors.push(parameterError(def, parameter, given));
        }
        if (errors.length >= 5) break;
      }
      const first = errors[0]?.message ?? 'invalid parameters';
      throw new AppError('ERR_VALIDATION', `Invalid operation "${def.name}": ${first}.`, { details: { operation: def.name, index, reason: 'invalid_parameters', errors } });
    }
    const reason = def.check?.(args);
    if (reason !== undefined) {
      throw new AppError('ERR_VALIDATION', `Invalid operation "${def.name}": ${reason.replace(/_/g, ' ')} (see GET /v1/operations).`, { details: { operation: def.name, index, reason } });
    }
    return Object.freeze({ name: def.name, args: Object.freeze(args) });
  }
  /** Parses one `name:params` segment of the string form. */
  function parseSegment(segment: string, index: number): ParsedOperation {
    const colon = segment.indexOf(':');
    const name = colon < 0 ? segment : segment.slice(0, colon);
    if (!NAME.test(name)) throw invalid(null, { reason: 'invalid_operation_name' }, index);
    const def = OPERATIONS.get(name);
    if (!def) return validate(name, {}, index); // throws the error that lists the operations
    const properties = schemaProperties(def.schema);
    const args: Record<string, unknown> = {};
    if (colon >= 0) {
      const items = segment.slice(colon + 1).split(',');
      items.forEach((item, i) => {
        const eq = item.indexOf('=');
        let key: string;
        let raw: string;
        if (eq < 0) {
          if (i !== 0 || def.primary === undefined) throw invalid(def.name, { reason: 'expected_key_value' }, index);
          key = def.primary;
          raw = item;
        } else {
          key = item.slice(0, eq);
          raw = item.slice(eq + 1);
          if (!PARAMETER_NAME.test(key)) throw invalid(def.name, { reason: 'invalid_parameter_name' }, index);
        }
        if (raw === '') throw invalid(def.name, { reason: 'empty_value', parameter: key }, index);
        if (Object.hasOwn(args, key)) throw invalid(def.name, { reason: 'duplicate_parameter', parameter: key }, index);
        args[key] = coerce(properties[key], decode(raw, def.name, index));
      });
    }
    return validate(name, args, index);
  }
  /** Parses the string form (see the module comment). */
  function parseString(input: string, offset: number): ParsedOperation[] {
    if (input.length > MAX_OPERATIONS_LENGTH) throw invalid(null, { reason: 'too_long', maxLength: MAX_OPERATIONS_LENGTH });
    const segments = input.split('/');
    if (segments.length > MAX_OPERATIONS) throw invalid(null, { reason: 'too_many_operations', max: MAX_OPERATIONS });
    return segments.map((segment, i) => {
      if (segment === '') throw invalid(null, { reason: 'empty_operation' }, offset + i);
      return parseSegment(segment, offset + i);
    });
  }
  /**
   * Parses and validates operations in either spelling.
   *
   * @param input the string form, or an array whose items are JSON objects (`{ op, ...params }`) or
   *   string-form segments (as the CLI collects repeated `--op` flags).
   * @returns validated operations, in the order given (use {@link buildPlan} to order them).
   * @throws AppError `ERR_VALIDATION` (400) naming the operation; nothing has been decoded yet.
   */
  function parseOperations(input: unknown): ParsedOperation[] {
    const out: ParsedOperation[] = [];
    if (typeof input === 'string') {
      if (input !== '') out.push(...parseString(input, 0));
    } else if (Array.isArray(input)) {
      if (input.length > MAX_OPERATIONS) throw invalid(null, { reason: 'too_many_operations', max: MAX_OPERATIONS });
      for (const item of input as unknown[]) {
        if (typeof item === 'string') {
          out.push(...parseString(item, out.length));
        } else if (item !== null && typeof item === 'object' && !Array.isArray(item)) {
          const { op, ...args } = item as Record<string, unknown>;
          out.push(validate(op, args, out.length));
        } else {
          throw invalid(null, { reason: 'invalid_operation' }, out.length);
        }
      }
    } else {
      throw invalid(null, { reason: 'invalid_operations' });
    }
    if (out.length > MAX_OPERATIONS) throw invalid(null, { reason: 'too_many_operations', max: MAX_OPERATIONS });
    return out;
  }
  /**
   * Orders validated operations by their registry `order` (stable for repeatable overlays).
   * @throws AppError `ERR_VALIDATION` when a non-repeatable operation appears twice.
   */
  function buildPlan(ops: readonly ParsedOperation[]): Plan<D> {
    if (ops.length > MAX_OPERATIONS) throw invalid(null, { reason: 'too_many_operations', max: MAX_OPERATIONS });
    const seen = new Set<string>();
    const steps: PlanStep<D>[] = ops.map((op, index) => {
      const operation = OPERATIONS.get(op.name);
      if (!operation) throw invalid(op.name, { reason: 'unknown_operation' }, index);
      if (!operation.repeatable) {
        if (seen.has(operation.name)) throw invalid(operation.name, { reason: 'duplicate_operation' }, index);
        seen.add(operation.name);
      }
      return Object.freeze({ operation, args: op.args });
    });
    // The pipeline applies operations in one fixed order (libvips'). Rather than silently apply
    // `resize/extract` as `extract/resize` (a different image), an order it would change is refused,
    // naming the two operations and the order that works (issue 9, item 12).
    let previous: PlanStep<D> | undefined;
    for (const [index, step] of steps.entries()) {
      if (step.operation.anyPosition) continue;
      if (previous && step.operation.order < previous.operation.order) {
        throw new AppError('ERR_VALIDATION', `"${step.operation.name}" is applied before "${previous.operation.name}" by this pipeline, so writing it after would be silently reordered; write "${step.operation.name}" first (operations run in this order: ${PIPELINE_ORDER}).`, {
          details: { operation: step.operation.name, index, reason: 'order_changed', must_come_before: previous.operation.name, pipeline_order: PIPELINE_ORDER.split(', ') },
        });
      }
      previous = step;
    }
    steps.sort((a, b) => a.operation.order - b.operation.order);
    return Object.freeze({ steps: Object.freeze(steps) });
  }

  return Object.freeze({ list, byName: OPERATIONS, maxOperations: MAX_OPERATIONS, maxLength: MAX_OPERATIONS_LENGTH, parse: parseOperations, plan: buildPlan, reference: buildReference(list, limits) });
}
