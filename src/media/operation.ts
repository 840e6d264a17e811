/**
 * The shape every media kind's operations share (STYLE.md, "Declarative registries"; ipx handlers):
 * one frozen entry per operation with a TypeBox schema (validated before any byte is decoded), an
 * `order` in the pipeline, and an `apply` typed to the kind's own pipeline. media/registry.ts turns a
 * list of them into a grammar, validation and plans; describe.ts into the published reference.
 */
import type { Static, TSchema } from 'typebox';

/**
 * One registry entry, typed to the pipeline it configures (`Target`, e.g. a sharp instance) and the
 * per-run state its kind shares between operations (`Context`).
 */
export interface OperationDef<S extends TSchema = TSchema, Target = unknown, Context = unknown> {
  /** Name used in URLs, the CLI and JSON (`{ op: name }`). */
  readonly name: string;
  /** Other accepted names (e.g. `crop` for `extract`). */
  readonly aliases?: readonly string[];
  /** One line for docs and the CLI help. */
  readonly description: string;
  /** Parameters; an object schema without additional properties. */
  readonly schema: S;
  /** The parameter a bare value binds to in the string form (`rotate:90`). */
  readonly primary?: string;
  /** Position in the pipeline (lower first). */
  readonly order: number;
  /**
   * The result does not depend on where it is written (output settings). Every other operation must
   * be written in pipeline order: the plan never reorders silently (issue 9, item 12).
   */
  readonly anyPosition?: boolean;
  /**
   * Other spellings users expect for some parameter values (`format:jpg` for `jpeg`), per parameter:
   * normalised before validation, so the canonical form and the plan only see the schema's values.
   */
  readonly valueAliases?: Readonly<Record<string, Readonly<Record<string, string>>>>;
  /**
   * Also runs on the device, in the browser SDK (packages/browser, wasm-vips): same output size and
   * format as the server and pixels within the parity tolerance (docs/device.md). An operation
   * without it is refused there with `ERR_VALIDATION`, `reason: not_on_device` (issue 15, item 4).
   */
  readonly device?: boolean;
  /** May appear more than once (overlays); everything else is refused when repeated. */
  readonly repeatable?: boolean;
  /** Reads another asset's content (watermark): a caller naming it needs the `assets:read` scope. */
  readonly readsAssets?: boolean;
  /**
   * Relative work per pixel for the cost estimate (default 1: one pass over the image, like a resize;
   * settings that do no pixel work say 0). The pipeline refuses a request whose estimated cost is over
   * `MediaLimits.maxCost` before any pixel is decoded (issue 9, item 4).
   */
  cost?(args: Static<S>): number;
  /** Cross-parameter rules a schema cannot express; returns a reason code to refuse, checked at parse time. */
  check?(args: Static<S>): string | undefined;
  /** Configures `target` (or `ctx`); may throw AppError `ERR_VALIDATION` for size-dependent checks. */
  apply(target: Target, args: Static<S>, ctx: Context): void | Promise<void>;
}

