#!/usr/bin/env node
// Regenerates docs/operations.md from the operation registry (run `npm run docs:operations`, which
// builds first). test/media/image/operations-reference.test.ts fails when the checked-in file differs.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { OPERATION_REFERENCE } = await import(new URL('../dist/src/media/image/operations/registry.js', import.meta.url).href);
const { VIDEO_OPERATION_REFERENCE } = await import(new URL('../dist/src/media/video/operations.js', import.meta.url).href);
const { renderReferenceMarkdown } = await import(new URL('../dist/src/media/describe.js', import.meta.url).href);
writeFileSync(`${root}docs/operations.md`, renderReferenceMarkdown(OPERATION_REFERENCE, VIDEO_OPERATION_REFERENCE));
console.log('wrote docs/operations.md');
