import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { sanitizeSvg } from '../../../src/media/image/svg.js';
import { throwsWith } from '../support.js';

const NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"';
const clean = (doc: string): string => sanitizeSvg(Buffer.from(doc)).toString('utf8');

/** Nothing that can execute or fetch may survive. */
function assertInert(doc: string): void {
  const out = doc.replace(' xmlns="http://www.w3.org/2000/svg"', '');
  for (const needle of [/<script/i, /\bon[a-z]+\s*=/i, /javascript:/i, /http:/i, /https:/i, /file:/i, /data:/i,
    /foreignObject/i, /<image/i, /<style/i, /@import/i, /<iframe/i, /<set/i, /<animate/i, /<!/, /<\?/]) {
    assert.doesNotMatch(out, needle);
  }
  const urls = out.match(/url\([^)]*\)/gi) ?? [];
  for (const u of urls) assert.match(u, /^url\(\s*['"]?#/);
}

describe('sanitizeSvg', () => {
  it('keeps shapes, gradients, text and same-document references, and still renders', async () => {
    const doc = `<?xml version="1.0"?><svg ${NS} width="40" height="20" viewBox="0 0 40 20">
      <defs><linearGradient id="g"><stop offset="0" stop-color="#f00"/><stop offset="1" stop-color="#00f"/></linearGradient>
      <rect id="r" width="10" height="10"/></defs>
      <rect width="40" height="20" fill="url(#g)"/><use href="#r" x="5"/><text x="1" y="15" style="fill:#fff;font-size:8px">Hi &amp; bye</text></svg>`;
    const out = clean(doc);
    assert.match(out, /<linearGradient id="g">/);
    assert.match(out, /fill="url\(#g\)"/);
    assert.match(out, /<use href="#r"/);
    assert.match(out, /Hi &amp; bye/);
    assert.match(out, /style="fill:#fff;font-size:8px"/);
    const png = await sharp(Buffer.from(out)).png().toBuffer();
    const meta = await sharp(png).metadata();
    assert.equal(meta.width, 40);
    assert.equal(meta.height, 20);
  });

  it('drops scripts and every event handler', () => {
    const out = clean(`<svg ${NS} onload="alert(1)"><script>alert(1)</script><script xlink:href="https://evil.example/x.js"/>
      <rect width="1" height="1" onclick="alert(2)" onmouseover='x()'/><g onfocusin="y()"><circle r="1"/></g></svg>`);
    assertInert(out);
    assert.doesNotMatch(out, /alert/);
    assert.match(out, /<circle r="1"\/>/);
  });

  it('drops <image> (external, file: and data: alike) and foreignObject', () => {
    const out = clean(`<svg ${NS}><image href="https://169.254.169.254/latest/meta-data"/>
      <image xlink:href="file:///etc/passwd"/><image href="data:image/png;base64,iVBORw0KGgo="/>
      <foreignObject><div xmlns="http://www.w3.org/1999/xhtml"><iframe src="http://x"/></div></foreignObject></svg>`);
    assertInert(out);
  });

  it('keeps <use> only for #fragments: http, file, data, relative and javascript targets are dropped', () => {
    const out = clean(`<svg ${NS}><defs><rect id="a" width="1" height="1"/></defs>
      <use xlink:href="http://evil.example/sprite.svg#a"/><use href="file:///etc/passwd#a"/>
      <use href="data:image/svg+xml,&lt;svg/&gt;#a"/><use href="other.svg#a"/><use href="javascript:alert(1)"/>
      <use xlink:href="#a"/><a href="javascript:alert(1)"><rect width="2" height="2"/></a></svg>`);
    assertInert(out);
    assert.equal(out.match(/<use /g)?.length, 1);
    assert.match(out, /<use href="#a"\/>/);
    assert.match(out, /<g><rect width="2" height="2"\/><\/g>/);
  });

  it('drops <use> chains that could instance exponentially', () => {
    const out = clean(`<svg ${NS}><defs><g id="a"><rect width="1" height="1"/></g>
      <g id="b"><use href="#a"/><use href="#a"/></g><g id="c"><use href="#b"/><use href="#b"/></g></defs>
      <use href="#c"/><use href="#missing"/></svg>`);
    // Only the uses pointing at use-free content remain (the two inside #b).
    assert.equal(out.match(/<use /g)?.length, 2);
    assert.doesNotMatch(out, /href="#c"|href="#b"|#missing/);
  });

  it('never instances a duplicated id (renderers disagree on which element it names)', () => {
    const out = clean(`<svg ${NS}><g id="a"><use href="#z"/></g><rect id="a" width="1" height="1"/>
      <rect id="z" width="1" height="1"/><use href="#a"/></svg>`);
    assert.doesNotMatch(out, /href="#a"/);
    assert.match(out, /href="#z"/);
  });

  it('drops url() that is not url(#id), in attributes and in style', () => {
    const out = clean(`<svg ${NS}><rect fill="url(http://evil.example/p.svg#x)" width="1" height="1"/>
      <rect style="fill:url('https://evil.example/a');stroke:#000;background:url(file:///etc/passwd)" width="1" height="1"/>
      <rect mask="url(data:image/svg+xml;base64,AAAA)" clip-path="url(#ok)" width="1" height="1"/></svg>`);
    assertInert(out);
    assert.match(out, /style="stroke:#000"/);
    assert.match(out, /clip-path="url\(#ok\)"/);
  });

  it('drops <style> elements, @import and processing-instruction stylesheets', () => {
    const out = clean(`<?xml version="1.0"?><?xml-stylesheet href="http://evil.example/s.css"?><svg ${NS}>
      <style>@import url(http://evil.example/s.css); rect { fill: url(file:///etc/passwd) }</style>
      <style><![CDATA[ @import "x.css"; ]]></style><rect width="1" height="1"/></svg>`);
    assertInert(out);
  });

  it('drops animation elements that could rewrite attributes into links', () => {
    const out = clean(`<svg ${NS}><a><set attributeName="href" to="javascript:alert(1)"/>
      <animate attributeName="href" values="javascript:alert(1)"/><text>x</text></a></svg>`);
    assertInert(out);
  });

  it('refuses DOCTYPE and ENTITY declarations (XXE, billion laughs) with 422', () => {
    const xxe = `<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><svg ${NS}><text>&xxe;</text></svg>`;
    const laughs = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
      <svg ${NS}><text>&lol2;</text></svg>`;
    const bare = `<svg ${NS}><!ENTITY a "b"></svg>`;
    for (const doc of [xxe, laughs, bare]) {
      const err = throwsWith(() => sanitizeSvg(Buffer.from(doc)), 'ERR_UNPROCESSABLE');
      assert.equal(err.status, 422);
    }
  });

  it('refuses undefined entities, malformed XML and non-SVG roots', () => {
    const bad = [
      `<svg ${NS}><text>&nbsp;</text></svg>`,
      `<svg ${NS}><text>AT&T</text></svg>`,
      `<svg ${NS}><rect width=1 /></svg>`,
      `<svg ${NS}><g></svg>`,
      `<svg ${NS}><rect width="1" width="2"/></svg>`,
      `<html><svg/></html>`,
      `<svg ${NS}/><svg/>`,
      `<svg ${NS}><text>&#0;</text></svg>`,
    ];
    for (const doc of bad) throwsWith(() => sanitizeSvg(Buffer.from(doc)), 'ERR_UNPROCESSABLE');
    throwsWith(() => sanitizeSvg(Buffer.from([0x3c, 0x73, 0x76, 0x67, 0xff, 0x2f, 0x3e])), 'ERR_UNPROCESSABLE');
  });

  it('decodes predefined and numeric references and re-escapes text', () => {
    const out = clean(`<svg ${NS}><text>&lt;b&gt; &#65;&#x42; &quot;&apos;</text></svg>`);
    assert.match(out, /<text>&lt;b&gt; AB "'<\/text>/);
  });

  it('bounds element count and depth', () => {
    const many = `<svg ${NS}>${'<rect/>'.repeat(30)}</svg>`;
    throwsWith(() => sanitizeSvg(many, { maxElements: 10, maxDepth: 64, maxAttributes: 64 }), 'ERR_UNPROCESSABLE');
    const deep = `<svg ${NS}>${'<g>'.repeat(100)}${'</g>'.repeat(100)}</svg>`;
    throwsWith(() => sanitizeSvg(deep), 'ERR_UNPROCESSABLE');
  });
});
