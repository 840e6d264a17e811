/**
 * Media capability: byte sniffing, limits, SVG sanitising, the operation registry, the image pipeline
 * and the bounded work queue. Pure core: no HTTP, no database; inputs and asset loading are passed in.
 */
export { sniff, sniffStream, looksLikeSvg, SNIFF_SAMPLE_BYTES, type SniffResult, type SniffedStream } from './sniff.js';
export {
  inspect,
  mediaLimits,
  allowedInputTypes,
  DEFAULT_MEDIA_LIMITS,
  type MediaLimits,
  type ImageInfo,
  type InputFormat,
} from './limits.js';
export { sanitizeSvg, DEFAULT_SVG_LIMITS, type SvgLimits } from './svg.js';
export * from './operations/index.js';
export {
  processImage,
  negotiateFormat,
  OUTPUT_MIME,
  PREVIEW_MAX_DIMENSION,
  type ProcessOptions,
  type ProcessResult,
  type OutputDescription,
} from './pipeline.js';
export { createWorkQueue, type WorkQueue, type WorkQueueOptions } from './queue.js';
export { escapeMarkup, fontFile, renderText } from './text.js';
