/**
 * 0013: usage counters for what every output is billed by (issue 9, item 7): `pixels:<media type>`
 * (width × height × frames of each export) and `video_ms:<media type>` (output video duration), next
 * to the existing `exports:<media type>`. The metric check is widened; nothing else changes.
 */
import { statements } from './helpers.js';

export const usageOutputs = statements([
  `ALTER TABLE usage_counters DROP CONSTRAINT usage_counters_metric_check`,
  `ALTER TABLE usage_counters ADD CONSTRAINT usage_counters_metric_check CHECK (metric ~ '^(requests|bytes_in|bytes_out|processing_ms|(exports|pixels|video_ms):[a-z0-9]+/[a-z0-9.+-]+)$' AND length(metric) <= 120)`,
]);
