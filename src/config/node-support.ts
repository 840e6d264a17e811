/**
 * Which Node.js versions Obscura supports: the LTS lines that still get security fixes. Node 20
 * reached end of life in April 2026, and pg-boss, cookie and content-disposition need >= 22.12
 * (issue 9, item 15). Kept in step with `engines` in package.json and the versions `.ci/run` tests.
 */
import type { DoctorFinding } from './index.js';

/** The supported range in words (README, doctor). */
export const SUPPORTED_NODE = 'Node.js 22 (>= 22.12) or 24';

/** True when `version` (e.g. `22.12.0`) is in the supported range. */
export function isSupportedNode(version: string): boolean {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number);
  return (major === 22 && minor >= 12) || major >= 24;
}

/** A doctor finding when the running Node.js is outside the supported range, else null. */
export function nodeSupportFinding(version: string = process.versions.node): DoctorFinding | null {
  if (isSupportedNode(version)) return null;
  return {
    level: 'warn',
    setting: 'node',
    message: `Node.js ${version} is not supported (end of life, or missing what dependencies need); run ${SUPPORTED_NODE}.`,
  };
}
