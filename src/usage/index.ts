/**
 * Usage metering (counts, not content): the meter and `recordUsage()`, monthly quotas, reports for
 * `GET /v1/usage`, and process-level Prometheus metrics. Knows nothing of HTTP.
 */
export { UsageMeter, recordUsage, resolutionBucket, RESOLUTION_BUCKETS, MAX_END_USER_ID_LENGTH, type UsageEvent, type UsageMeterOptions, type QuotaDelta } from './meter.js';
export { QuotaGuard, QUOTA_KINDS, exceededQuota, hasQuota, limitsFromSettings, quotaExceededError, quotaHeaders, type QuotaKind, type QuotaLimits, type QuotaStatus, type QuotaUsage } from './quota.js';
export { usageReport, usageDays, type AppUsage, type UsageFigures, type DayUsage } from './report.js';
export { createProcessMetrics, metricsText, startMetricsServer, metricsTokenMatches, METRICS_CONTENT_TYPE, type MetricsServer, type ProcessMetrics } from './metrics.js';
export { monthOf, monthEnd, isMonth, secondsUntilMonthEnd } from './month.js';
