/**
 * The part of tar-stream 3.1 (MIT, mafintosh; a streaming tar generator) that the tenant export uses.
 * The package ships no types; this declares only `pack`, as tar-stream's README documents it.
 */
declare module 'tar-stream' {
  import type { EventEmitter } from 'node:events';

  /** A tar header (only the fields the export sets). */
  interface Headers {
    name: string;
    size?: number;
    mode?: number;
    mtime?: Date;
    type?: 'file' | 'directory';
  }

  /** One entry's body: write exactly `size` bytes, then end. A streamx Writable. */
  interface EntryWritable extends EventEmitter {
    write(chunk: Uint8Array): boolean;
    end(): void;
    destroy(err?: Error): void;
  }

  /** The archive: a streamx Readable (async-iterable) of tar bytes. */
  interface Pack extends EventEmitter, AsyncIterable<Uint8Array> {
    entry(header: Headers, callback?: (err: Error | null) => void): EntryWritable;
    entry(header: Headers, buffer: Uint8Array | string, callback?: (err: Error | null) => void): EntryWritable;
    finalize(): void;
    destroy(err?: Error): void;
  }

  export function pack(opts?: Record<string, unknown>): Pack;
}
