/**
 * 0015: video (issue 11).
 *
 * - `assets.video`: what ffprobe said of an uploaded video (container, duration, size, rotation, frame
 *   rate, codecs, bit rates, audio, colour), shown by GET /v1/assets/{id}; null for images and for
 *   videos stored while no ffprobe was installed (processing probes those before it starts).
 * - `jobs.media`: which queue the job runs on (`video` jobs have their own workers and concurrency).
 * - `jobs.progress`: the latest progress of a running video job (percent, frames, fps, eta).
 * - `jobs.status` gains `cancelled` (POST /v1/jobs/{id}/cancel).
 */
import { statements } from './helpers.js';

export const video = statements([
  `ALTER TABLE assets ADD COLUMN video jsonb`,
  `ALTER TABLE jobs ADD COLUMN media text NOT NULL DEFAULT 'image' CHECK (media IN ('image', 'video'))`,
  `ALTER TABLE jobs ADD COLUMN progress jsonb`,
  `ALTER TABLE jobs DROP CONSTRAINT jobs_status_check`,
  `ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled'))`,
]);
