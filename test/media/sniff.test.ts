import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { sniff } from '../../src/media/sniff.js';
import { sniffStream } from '../../src/media/sniff-stream.js';
import { animatedGif, jpegWithExif, pngNamedJpg, quadrants, textFile } from '../fixtures/make.js';

describe('sniff', () => {
  it('identifies every allow-listed raster format from its bytes', async () => {
    const cases = [
      ['png', 'image/png'],
      ['jpeg', 'image/jpeg'],
      ['webp', 'image/webp'],
      ['tiff', 'image/tiff'],
      ['gif', 'image/gif'],
      ['avif', 'image/avif'],
    ] as const;
    for (const [format, mime] of cases) {
      const type = await sniff(await quadrants(32, 32, format));
      assert.equal(type?.mime, mime, format);
    }
    assert.equal((await sniff(await animatedGif()))?.mime, 'image/gif');
    assert.equal((await sniff(await jpegWithExif()))?.mime, 'image/jpeg');
  });

  it('ignores the file name: a PNG called photo.jpg is a PNG', async () => {
    const { name, data } = await pngNamedJpg();
    assert.ok(name.endsWith('.jpg'));
    assert.deepEqual(await sniff(data), { mime: 'image/png', ext: 'png' });
  });

  it('returns null for text, empty input and non-SVG XML', async () => {
    assert.equal(await sniff(textFile()), null);
    assert.equal(await sniff(Buffer.alloc(0)), null);
    assert.equal(await sniff(Buffer.from('<?xml version="1.0"?><html><body/></html>')), null);
    assert.equal(await sniff(Buffer.from('{"svg": "<svg>"}')), null);
  });

  it('recognises SVG after a BOM, an XML declaration, comments and a DOCTYPE', async () => {
    const docs = [
      '<svg xmlns="http://www.w3.org/2000/svg"/>',
      '\uFEFF<svg xmlns="http://www.w3.org/2000/svg"></svg>',
      '<?xml version="1.0" encoding="UTF-8"?>\n<!-- made by hand -->\n<svg width="1" height="1"/>',
      '<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x.dtd"><svg/>',
      '<!DOCTYPE svg [<!ENTITY a "b">]><svg>&a;</svg>',
    ];
    for (const doc of docs) assert.equal((await sniff(Buffer.from(doc)))?.mime, 'image/svg+xml', doc);
    assert.equal(await sniff(Buffer.from('<svgfoo/>')), null);
    assert.equal(await sniff(Buffer.from('<!-- unterminated <svg/>')), null);
  });

  it('sniffs a stream and still yields every byte in order', async () => {
    const data = await jpegWithExif();
    const chunks: Buffer[] = [];
    for (let i = 0; i < data.length; i += 1000) chunks.push(data.subarray(i, i + 1000));
    const { type, stream } = await sniffStream(Readable.from(chunks));
    assert.equal(type?.mime, 'image/jpeg');
    const out: Buffer[] = [];
    for await (const chunk of stream) out.push(chunk as Buffer);
    assert.ok(Buffer.concat(out).equals(data));
  });

  it('sniffs a stream shorter than the sample and of text', async () => {
    const small = await quadrants(8, 8, 'png');
    const a = await sniffStream(Readable.from([small]));
    assert.equal(a.type?.mime, 'image/png');
    const outA: Buffer[] = [];
    for await (const chunk of a.stream) outA.push(chunk as Buffer);
    assert.ok(Buffer.concat(outA).equals(small));

    const b = await sniffStream(Readable.from([textFile()]));
    assert.equal(b.type, null);
    b.stream.destroy();
  });

  it('destroys the source when the replay stream is destroyed unread', async () => {
    const source = new Readable({ read() {} });
    source.push(Buffer.alloc(5000));
    const { stream } = await sniffStream(source);
    stream.destroy();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(source.destroyed, true);
  });
});
