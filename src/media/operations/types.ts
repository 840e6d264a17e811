/**
 * The shape of an image operation (STYLE.md, "Declarative registries"; ipx handlers).
 *
 * Each operation is one frozen entry: a TypeBox schema with clamped ranges (validated before any byte
 * is decoded), an `order` that places it in the pipeline whatever order the caller wrote, and an
 * `apply` that configures a sharp pipeline. Adding an operation means adding one entry and its test.
 */
import type { OverlayOptions, Sharp } from 'sharp';
import type { Static, TSchema } from 'typebox';
import type { ImageInfo, MediaLimits } from '../limits.js';

/** Output formats a caller may ask for; `auto` negotiates from the Accept header. */
export type OutputFormat = 'jpeg' | 'png' | 'webp' | 'avif' | 'gif' | 'tiff';

/** A deferred composite, built once the processed base image's size is known. */
export type Overlay = (base: { width: number; height: number }) => Promise<OverlayOptions>;

/** Mutable state shared by the operations of one run. Created by the pipeline, not by callers. */
export interface OperationContext {
  readonly limits: Readonly<MediaLimits>;
  /** The inspected input (header facts only). */
  readonly source: Readonly<Omit<ImageInfo, 'bytes'>>;
  /** Largest output side for this run: `limits.maxOutputDimension`, or the preview size. */
  readonly maxDimension: number;
  /** Current image size (one frame), updated by geometry operations. */
  width: number;
  height: number;
  /** False once a data-dependent operation (trim) ran: `width`/`height` are then upper bounds. */
  exact: boolean;
  /** Colour used by `resize` (contain), `rotate` (corners) and `flatten`; set by `background`. */
  background: string;
  /** Composites applied last, on the processed image. */
  readonly overlays: Overlay[];
  /** Output choices made by `format` / `quality`. */
  readonly output: { format?: OutputFormat | 'auto'; quality?: number };
  /**
   * Loads another asset's bytes (watermarks). Security: the caller scopes it to the same org and
   * answers "not found" for anything else; the bytes are inspected like any input.
   */
  loadAsset(assetId: string): Promise<Buffer>;
}

/** One registry entry. */
export interface OperationDef<S extends TSchema = TSchema> {
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
  /** Position in the pipeline (lower first); mirrors libvips' fixed order in sharp. */
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
  /** Configures `pipeline` (or `ctx`); may throw AppError `ERR_VALIDATION` for size-dependent checks. */
  apply(pipeline: Sharp, args: Static<S>, ctx: OperationContext): void | Promise<void>;
}

/** Declares an operation with its parameter types inferred from the schema. */
export function defineOperation<S extends TSchema>(def: OperationDef<S>): OperationDef<S> {
  return Object.freeze(def);
}
