/**
 * The image operation registry: the list of image operations (each in its own entry file) bound to the
 * shared registry mechanism (media/registry.ts: grammar, validation, canonical form, order), and the
 * image plan, whose facts (output format, overlays) come from the entries' declared traits.
 */
import { createRegistry, serializeOperations, type ParsedOperation, type Plan as BasePlan, type PlanStep as BasePlanStep } from '../../registry.js';
import { background, flatten, gamma, grayscale, modulate, normalize, tint } from './colour.js';
import { blur, sharpen } from './filters.js';
import { extract, flip, flop, resize, rotate, trim } from './geometry.js';
import { format, quality } from './output.js';
import { text, watermark } from './overlay.js';
import type { OperationDef, OutputFormat } from './types.js';
import type { OperationReference } from '../../describe.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOperation = OperationDef<any>;

/** At most this many operations per request. */
export const MAX_OPERATIONS = 20;
/** At most this many characters in the string form. */
export const MAX_OPERATIONS_LENGTH = 4096;

const IMAGE_OPERATIONS = createRegistry<AnyOperation>(
  // Every image operation. Adding one: its entry file, one name here, and its test.
  [background, flip, flop, rotate, trim, extract, flatten, gamma, grayscale, resize, blur, modulate, sharpen, normalize, tint, watermark, text, format, quality],
  { maxOperations: MAX_OPERATIONS, maxLength: MAX_OPERATIONS_LENGTH },
);

/** Every operation, in pipeline order. */
export const OPERATION_LIST: readonly AnyOperation[] = IMAGE_OPERATIONS.list;

/** Lookup by name and alias. */
export const OPERATIONS: ReadonlyMap<string, AnyOperation> = IMAGE_OPERATIONS.byName;

export { serializeOperations, type ParsedOperation };

/** One step of an image plan. */
export type PlanStep = BasePlanStep<AnyOperation>;

/** An image plan: the steps, and what the entries' traits say about the output. */
export interface Plan extends BasePlan<AnyOperation> {
  /** The requested output format, if any (`auto` = negotiated from Accept). */
  readonly format: OutputFormat | 'auto' | undefined;
  /** True when the response varies with Accept (send `Vary: Accept`). */
  readonly negotiatesFormat: boolean;
  /** True when overlays (watermark, text) are present. */
  readonly hasOverlays: boolean;
}

/**
 * Parses either spelling of image operations (see media/registry.ts for the grammar).
 * @throws AppError `ERR_VALIDATION` naming the operation, the parameter and what it accepts.
 */
export function parseOperations(input: unknown): ParsedOperation[] {
  return IMAGE_OPERATIONS.parse(input);
}

/**
 * Orders validated operations into an image plan.
 * @throws AppError `ERR_VALIDATION` for a repeated, unknown or out-of-order operation.
 */
export function buildPlan(ops: readonly ParsedOperation[]): Plan {
  const { steps } = IMAGE_OPERATIONS.plan(ops);
  const formatStep = steps.find((s) => s.operation.outputFormat);
  const fmt = formatStep?.operation.outputFormat?.(formatStep.args);
  return Object.freeze({ steps, format: fmt, negotiatesFormat: fmt === 'auto', hasOverlays: steps.some((s) => s.operation.overlay === true) });
}

/** The published reference of this registry (`GET /v1/operations`, docs/operations.md). */
export const OPERATION_REFERENCE: OperationReference = IMAGE_OPERATIONS.reference;
