/**
 * SVG sanitiser: parse strictly, rebuild from an allowlist.
 *
 * SVG is a document format that can run script, fetch URLs (images, fonts, stylesheets, `<use>`
 * targets) and expand entities. Obscura only accepts it when an app enables it, and then only after
 * this module has turned it into a plain drawing: the input is tokenised by a deliberately small,
 * strict XML reader (anything it does not understand is refused) and a new document is written out
 * containing only allowlisted elements and attributes, with every reference kept same-document.
 *
 * Threats handled here (each has a test in test/media/image/svg.test.ts):
 * - script execution: `<script>`, `on*` handlers, `javascript:` URLs, `<foreignObject>` (HTML), animation
 *   elements that can rewrite attributes (`<set attributeName="href">`);
 * - fetching (SSRF, tracking, local file reads): `<image>`, external `href`/`xlink:href`, `url(...)`
 *   that is not `url(#id)`, `<style>` (`@import`, `url()`), `<?xml-stylesheet?>`;
 * - XXE and entity expansion ("billion laughs"): any `<!DOCTYPE` or `<!ENTITY` refuses the document,
 *   and only the five predefined and numeric character references are decoded;
 * - rendering DoS: element, depth and attribute counts are bounded; filters are dropped; `<use>` may only
 *   point at content that itself contains no `<use>` (no exponential instancing).
 */
import { AppError } from '../../errors.js';

/** Bounds on the parsed document. Defaults are generous for real artwork and small for a bomb. */
export interface SvgLimits {
  /** Maximum number of elements in the input (default 20 000). */
  maxElements: number;
  /** Maximum element nesting depth (default 64). */
  maxDepth: number;
  /** Maximum attributes on one element (default 64). */
  maxAttributes: number;
}

/** Default {@link SvgLimits}. */
export const DEFAULT_SVG_LIMITS: Readonly<SvgLimits> = Object.freeze({
  maxElements: 20_000,
  maxDepth: 64,
  maxAttributes: 64,
});

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Elements kept as they are (shapes, paths, groups, gradients, text, clipping, markers). */
const ELEMENTS = new Set([
  'svg', 'g', 'defs', 'title', 'desc', 'symbol', 'use',
  'path', 'rect', 'circle', 'ellipse', 'line', 'polyline', 'polygon',
  'text', 'tspan', 'textPath',
  'linearGradient', 'radialGradient', 'stop', 'pattern',
  'clipPath', 'mask', 'marker',
]);

/** Elements replaced by a `<g>` so their (safe) children still render: a link's target is dropped. */
const UNWRAP_AS_GROUP = new Set(['a', 'switch']);

/** Elements whose text content is rendered (everything else drops its character data). */
const TEXT_ELEMENTS = new Set(['text', 'tspan', 'textPath', 'title', 'desc']);

/** Geometry and presentation attributes. `href` and `style` are handled separately below. */
const ATTRIBUTES = new Set([
  'id', 'transform', 'x', 'y', 'x1', 'y1', 'x2', 'y2', 'cx', 'cy', 'r', 'rx', 'ry', 'fx', 'fy', 'fr',
  'width', 'height', 'd', 'points', 'pathLength', 'viewBox', 'preserveAspectRatio', 'version',
  'fill', 'fill-opacity', 'fill-rule', 'stroke', 'stroke-width', 'stroke-opacity', 'stroke-linecap',
  'stroke-linejoin', 'stroke-miterlimit', 'stroke-dasharray', 'stroke-dashoffset', 'opacity', 'color',
  'display', 'visibility', 'overflow', 'clip-path', 'clip-rule', 'mask', 'paint-order', 'vector-effect',
  'shape-rendering', 'text-rendering', 'color-interpolation',
  'font-family', 'font-size', 'font-weight', 'font-style', 'font-variant', 'font-stretch',
  'text-anchor', 'dominant-baseline', 'alignment-baseline', 'baseline-shift', 'letter-spacing',
  'word-spacing', 'text-decoration', 'writing-mode', 'direction', 'unicode-bidi',
  'dx', 'dy', 'rotate', 'textLength', 'lengthAdjust', 'startOffset', 'method', 'spacing', 'side',
  'offset', 'stop-color', 'stop-opacity', 'gradientUnits', 'gradientTransform', 'spreadMethod',
  'clipPathUnits', 'maskUnits', 'maskContentUnits', 'patternUnits', 'patternContentUnits',
  'patternTransform', 'marker-start', 'marker-mid', 'marker-end', 'markerWidth', 'markerHeight',
  'markerUnits', 'refX', 'refY', 'orient', 'xml:space',
]);

/** CSS properties allowed inside a `style` attribute: the presentation attributes above, nothing else. */
const STYLE_PROPERTIES = new Set(
  [...ATTRIBUTES].filter((a) => /^[a-z-]+$/.test(a) && !['id', 'transform', 'd', 'points', 'version', 'method', 'side', 'orient', 'offset', 'rotate', 'spacing'].includes(a)),
);

const NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;
const FRAGMENT = /^#[A-Za-z_][A-Za-z0-9_.-]*$/;
/** `url(#id)`, optionally quoted; anything else in a `url(` (http:, file:, data:, javascript:) is refused. */
const LOCAL_URL = /url\(\s*(['"]?)#[A-Za-z_][A-Za-z0-9_.-]*\1\s*\)/gi;

interface ElementNode {
  name: string;
  attributes: Array<[string, string]>;
  children: Node[];
}
type Node = ElementNode | string;

function refuse(reason: string): AppError {
  return new AppError('ERR_UNPROCESSABLE', 'The SVG document could not be accepted.', {
    details: { reason },
  });
}

const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Decodes the five predefined entities and numeric character references; refuses any other entity. */
function decodeEntities(raw: string): string {
  return raw.replace(/&([^;&\s]{0,12});?/g, (match, body: string) => {
    if (!match.endsWith(';')) throw refuse('entity');
    const named = PREDEFINED[body];
    if (named !== undefined) return named;
    let code = Number.NaN;
    if (/^#[0-9]{1,7}$/.test(body)) code = Number.parseInt(body.slice(1), 10);
    else if (/^#x[0-9A-Fa-f]{1,6}$/.test(body)) code = Number.parseInt(body.slice(2), 16);
    // XML 1.0 Char production: no C0 controls except tab/LF/CR, no surrogates, no U+FFFE/FFFF.
    const valid =
      code === 0x9 || code === 0xa || code === 0xd ||
      (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff);
    if (!valid) throw refuse('entity');
    return String.fromCodePoint(code);
  });
}

/** Tokenises and builds the element tree; refuses what XML 1.0 does not allow or we do not support. */
function parse(text: string, limits: SvgLimits): ElementNode {
  // XXE and billion-laughs live in the DTD; we accept no DTD at all (OWASP XXE prevention).
  if (/<!DOCTYPE/i.test(text) || /<!ENTITY/i.test(text)) throw refuse('doctype');
  let i = 0;
  let elements = 0;
  let root: ElementNode | undefined;
  const stack: ElementNode[] = [];
  const len = text.length;
  while (i < len) {
    const lt = text.indexOf('<', i);
    const chunkEnd = lt < 0 ? len : lt;
    if (chunkEnd > i) {
      const raw = text.slice(i, chunkEnd);
      if (raw.includes(']]>')) throw refuse('syntax');
      const parent = stack[stack.length - 1];
      if (parent) parent.children.push(decodeEntities(raw));
      else if (raw.trim() !== '') throw refuse('syntax');
    }
    if (lt < 0) break;
    i = lt;
    if (text.startsWith('<!--', i)) {
      const end = text.indexOf('-->', i + 4);
      if (end < 0) throw refuse('syntax');
      i = end + 3;
    } else if (text.startsWith('<![CDATA[', i)) {
      const end = text.indexOf(']]>', i + 9);
      if (end < 0) throw refuse('syntax');
      const parent = stack[stack.length - 1];
      if (!parent) throw refuse('syntax');
      parent.children.push(text.slice(i + 9, end));
      i = end + 3;
    } else if (text.startsWith('<?', i)) {
      // The XML declaration and any processing instruction (e.g. <?xml-stylesheet href=...?>) are
      // dropped: we write our own prolog-less document.
      const end = text.indexOf('?>', i + 2);
      if (end < 0) throw refuse('syntax');
      i = end + 2;
    } else if (text.startsWith('<!', i)) {
      throw refuse('declaration');
    } else if (text.startsWith('</', i)) {
      const end = text.indexOf('>', i);
      if (end < 0) throw refuse('syntax');
      const name = text.slice(i + 2, end).trim();
      const open = stack.pop();
      if (!open || open.name !== name) throw refuse('syntax');
      i = end + 1;
    } else {
      // Start tag: name, then attributes whose values are always quoted.
      let j = i + 1;
      while (j < len && !/[\s/>]/.test(text[j]!)) j++;
      const name = text.slice(i + 1, j);
      if (!NAME.test(name)) throw refuse('syntax');
      const attributes: Array<[string, string]> = [];
      const seen = new Set<string>();
      let selfClosing = false;
      for (;;) {
        while (j < len && /\s/.test(text[j]!)) j++;
        if (j >= len) throw refuse('syntax');
        if (text[j] === '>') {
          j++;
          break;
        }
        if (text.startsWith('/>', j)) {
          selfClosing = true;
          j += 2;
          break;
        }
        const nameStart = j;
        while (j < len && !/[\s=/>]/.test(text[j]!)) j++;
        const attrName = text.slice(nameStart, j);
        if (!NAME.test(attrName) || seen.has(attrName)) throw refuse('syntax');
        seen.add(attrName);
        while (j < len && /\s/.test(text[j]!)) j++;
        if (text[j] !== '=') throw refuse('syntax');
        j++;
        while (j < len && /\s/.test(text[j]!)) j++;
        const quote = text[j];
        if (quote !== '"' && quote !== "'") throw refuse('syntax');
        const valueEnd = text.indexOf(quote, j + 1);
        if (valueEnd < 0) throw refuse('syntax');
        const rawValue = text.slice(j + 1, valueEnd);
        if (rawValue.includes('<')) throw refuse('syntax');
        attributes.push([attrName, decodeEntities(rawValue)]);
        if (attributes.length > limits.maxAttributes) throw refuse('too_many_attributes');
        j = valueEnd + 1;
      }
      elements++;
      if (elements > limits.maxElements) throw refuse('too_many_elements');
      const node: ElementNode = { name, attributes, children: [] };
      const parent = stack[stack.length - 1];
      if (parent) parent.children.push(node);
      else if (root) throw refuse('syntax');
      else root = node;
      if (!selfClosing) {
        stack.push(node);
        if (stack.length > limits.maxDepth) throw refuse('too_deep');
      }
      i = j;
    }
  }
  if (stack.length > 0 || !root) throw refuse('syntax');
  if (root.name !== 'svg') throw refuse('not_svg');
  return root;
}

function safeValue(value: string): boolean {
  // Only same-document url(#id) references survive; then nothing that could smuggle another scheme or
  // CSS construct (escapes, comments, at-rules, IE expressions) may remain.
  const rest = value.replace(LOCAL_URL, '');
  if (/url\s*\(/i.test(rest)) return false;
  if (/[\\@<>]|\/\*|expression\s*\(|javascript:|data:/i.test(rest)) return false;
  return true;
}

function cleanStyle(style: string): string | undefined {
  const kept: string[] = [];
  for (const declaration of style.split(';')) {
    const colon = declaration.indexOf(':');
    if (colon < 0) continue;
    const prop = declaration.slice(0, colon).trim().toLowerCase();
    const value = declaration.slice(colon + 1).trim();
    if (STYLE_PROPERTIES.has(prop) && value !== '' && safeValue(value) && !/[{}]/.test(value)) {
      kept.push(`${prop}:${value}`);
    }
  }
  return kept.length > 0 ? kept.join(';') : undefined;
}

/** Elements whose `href` may point at another element of the same document. */
const HREF_ELEMENTS = new Set(['use', 'textPath', 'linearGradient', 'radialGradient', 'pattern']);

function cleanAttributes(element: string, attributes: ReadonlyArray<[string, string]>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of attributes) {
    if (name === 'href' || name === 'xlink:href') {
      // Same-document fragments only: no http(s):, file:, data:, javascript: or relative paths.
      if (HREF_ELEMENTS.has(element) && FRAGMENT.test(value.trim())) {
        out.push(['href', value.trim()]);
      }
      continue;
    }
    if (name === 'style') {
      const style = cleanStyle(value);
      if (style !== undefined) out.push(['style', style]);
      continue;
    }
    if (ATTRIBUTES.has(name) && safeValue(value)) out.push([name, value]);
  }
  return out;
}

function sanitiseNode(node: ElementNode): ElementNode | undefined {
  let name = node.name;
  if (UNWRAP_AS_GROUP.has(name)) name = 'g';
  else if (!ELEMENTS.has(name)) return undefined;
  const children: Node[] = [];
  for (const child of node.children) {
    if (typeof child === 'string') {
      if (TEXT_ELEMENTS.has(name)) children.push(child);
      continue;
    }
    const clean = sanitiseNode(child);
    if (clean) children.push(clean);
  }
  return { name, attributes: cleanAttributes(name, node.attributes), children };
}

function collectIds(node: ElementNode, ids: Map<string, ElementNode[]>): void {
  for (const [name, value] of node.attributes) if (name === 'id') ids.set(value, [...(ids.get(value) ?? []), node]);
  for (const child of node.children) if (typeof child !== 'string') collectIds(child, ids);
}

function containsUse(node: ElementNode): boolean {
  return node.name === 'use' || node.children.some((c) => typeof c !== 'string' && containsUse(c));
}

/**
 * `<use>` may only instance content that contained no `<use>` in the sanitised document: bounded work
 * (no exponential "use bombs"), no reference loops. Decided on a snapshot, so the result does not
 * depend on document order.
 */
function pruneUses(root: ElementNode): void {
  const ids = new Map<string, ElementNode[]>();
  collectIds(root, ids);
  const instantiable = new Set<string>();
  // A duplicated id is never a target: renderers differ on which element it names.
  for (const [id, nodes] of ids) if (nodes.length === 1 && !containsUse(nodes[0]!)) instantiable.add(id);
  const prune = (node: ElementNode): void => {
    node.children = node.children.filter((child) => {
      if (typeof child === 'string') return true;
      if (child.name === 'use') {
        const href = child.attributes.find(([a]) => a === 'href')?.[1];
        return href !== undefined && instantiable.has(href.slice(1));
      }
      prune(child);
      return true;
    });
  };
  prune(root);
}

function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escapeAttr(s: string): string {
  return escapeText(s).replace(/"/g, '&quot;').replace(/\t/g, '&#9;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;');
}

function serialise(node: ElementNode, isRoot: boolean): string {
  let out = `<${node.name}`;
  if (isRoot) out += ` xmlns="${SVG_NS}"`;
  for (const [name, value] of node.attributes) out += ` ${name}="${escapeAttr(value)}"`;
  if (node.children.length === 0) return `${out}/>`;
  out += '>';
  for (const child of node.children) out += typeof child === 'string' ? escapeText(child) : serialise(child, false);
  return `${out}</${node.name}>`;
}

/**
 * Returns a rebuilt, inert copy of an SVG document.
 *
 * @param input UTF-8 bytes (a BOM is allowed) or a string.
 * @param limits structural bounds (default {@link DEFAULT_SVG_LIMITS}).
 * @throws AppError `ERR_UNPROCESSABLE` (422, `details.reason`) when the document is not well-formed,
 *   has a DOCTYPE/ENTITY, uses an unknown entity, is not UTF-8, has a root other than `<svg>` or exceeds
 *   the limits. Unsafe *content* is not an error: it is dropped.
 */
export function sanitizeSvg(input: Buffer | Uint8Array | string, limits: SvgLimits = DEFAULT_SVG_LIMITS): Buffer {
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(input);
    } catch {
      throw refuse('encoding');
    }
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  // XML 1.0 forbids these; they also confuse downstream C parsers.
  if (/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/.test(text)) throw refuse('control_character');
  const root = sanitiseNode(parse(text, limits));
  if (!root) throw refuse('not_svg');
  pruneUses(root);
  return Buffer.from(serialise(root, true), 'utf8');
}
