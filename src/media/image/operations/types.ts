/**
 * The shape of an image operation (STYLE.md, "Declarative registries"; ipx handlers).
 *
 * Each operation is one frozen entry: a TypeBox schema with clamped ranges (validated before any byte
 * is decoded), an `order` that places it in the pipeline whatever order the caller wrote, an `apply`
 * that configures a sharp pipeline, and the traits below. Adding an operation means adding one entry,
 * one line in the list (registry.ts) and its test.
 */
import type { OverlayOptions, Sharp } from 'sharp';
import type { Static, TSchema } from 'typebox';
import type { OperationDef as BaseOperationDef } from '../../registry.js';
import { AppError } from '../../../errors.js';
import type { MediaLimits } from '../../limits.js';
import type { ImageInfo } from '../inspect.js';

/** Output formats a caller may ask for; `auto` negotiates from the Accept header. */
export type OutputFormat = 'jpeg' | 'png' | 'webp' | 'avif' | 'gif' | 'tiff';

/** A deferred composite, built once the processed base image's size is known. */
export type Overlay = (base: { width: number; height: number }) => Promise<OverlayOptions>;

/** What the overlay entries ask the pipeline to draw (image/overlays.ts holds the sharp drawing). */
export interface OverlayDrawing {
  /** Loads and inspects another asset now (a missing or hostile one fails early); draws it later. */
  watermark(args: { assetId: string; gravity?: string | undefined; opacity?: number | undefined; scale?: number | undefined }): Promise<Overlay>;
  /** Text rendered literally with the bundled font, sized to the processed image. */
  text(args: { text: string; size?: number | undefined; color?: string | undefined; background?: string | undefined; gravity?: string | undefined }): Overlay;
}

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
  /** Draws overlays (the pipeline's engine); absent in predictions, which replay geometry only. */
  readonly draw: OverlayDrawing;
}

/**
 * One image operation: the shared entry shape (media/registry.ts) typed to a sharp pipeline, plus the
 * traits the image pipeline and its predictions read. A trait is declared by the entry it describes,
 * so nothing outside an entry knows an operation by name.
 */
export interface OperationDef<S extends TSchema = TSchema> extends BaseOperationDef<S, Sharp, OperationContext> {
  /** Chooses the output format (`format`): the plan's format is what this returns. */
  outputFormat?(args: Static<S>): OutputFormat | 'auto';
  /** Composites something on the processed image (watermark, text): one frame, drawn last. */
  readonly overlay?: boolean;
  /** Sizes the output itself (resize): without such a step, an image over the output limit is fitted down. */
  readonly sizesOutput?: boolean;
  /** Removes transparency (flatten): a JPEG output then needs no extra flatten. */
  readonly removesAlpha?: boolean;
  /** Changes only the geometry: replayed on an idle pipeline to predict the output size before decoding. */
  readonly geometry?: boolean;
  /** Holds a whole output-sized frame at once (blur, trim, overlays, free rotation), for the memory estimate. */
  wholeFrame?(args: Static<S>): boolean;
}

/**
 * The state one run starts from: the source's size, a white background, no overlays, no output
 * choices. Without `loadAsset`, a watermark is "not found" (predictions never read other assets).
 */
export function newOperationContext(o: { limits: Readonly<MediaLimits>; source: Readonly<Omit<ImageInfo, 'bytes'>>; maxDimension: number; loadAsset?: ((assetId: string) => Promise<Buffer>) | undefined; draw?: OverlayDrawing | undefined }): OperationContext {
  return {
    limits: o.limits,
    source: o.source,
    maxDimension: o.maxDimension,
    width: o.source.width,
    height: o.source.height,
    exact: true,
    background: '#ffffff',
    overlays: [],
    output: {},
    loadAsset: o.loadAsset ?? (() => Promise.reject(new AppError('ERR_NOT_FOUND', 'The asset does not exist.'))),
    draw: o.draw ?? NO_DRAWING,
  };
}

/** The drawing of a context that draws nothing (predictions replay geometry only; a programming error otherwise). */
const NO_DRAWING: OverlayDrawing = Object.freeze({
  watermark: () => Promise.reject(new Error('this operation context draws no overlays')),
  text: () => {
    throw new Error('this operation context draws no overlays');
  },
});

/** Declares an operation with its parameter types inferred from the schema. */
export function defineOperation<S extends TSchema>(def: OperationDef<S>): OperationDef<S> {
  return Object.freeze(def);
}
