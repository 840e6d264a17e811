// A node:test reporter that writes how long each test file took, as JSON ({ "<file relative to
// dist/test>": seconds }), summed over the file's top-level tests. scripts/test.js passes it as a
// second reporter and reads the result of the previous run to start the slowest files first: with
// two files at a time, a long file started last is the suite's tail.
import { relative } from 'node:path';

const testDir = new URL('../dist/test/', import.meta.url).pathname;

export default async function* timings(source) {
  const perFile = {};
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const { nesting, file, details } = event.data;
    if (nesting !== 0 || !file || !details) continue;
    const key = relative(testDir, file.startsWith('file:') ? new URL(file).pathname : file);
    perFile[key] = Math.round(((perFile[key] ?? 0) + details.duration_ms / 1000) * 10) / 10;
  }
  yield `${JSON.stringify(perFile, Object.keys(perFile).sort((a, b) => perFile[b] - perFile[a]), 1)}\n`;
}
