'use strict';
// Every relative link of README.md and docs/*.md points to a file of the repository, and every
// #anchor to a heading of its target, as GitHub names them.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const repoRoot = path.resolve(__dirname, '..', '..');

function documents() {
  const docs = fs.readdirSync(path.join(repoRoot, 'docs')).filter((name) => name.endsWith('.md')).sort();
  return ['README.md', ...docs.map((name) => `docs/${name}`)];
}

/** The document's lines outside fenced code blocks, with their line numbers. */
function proseLines(text) {
  const lines = [];
  let fenced = false;
  text.split('\n').forEach((line, index) => {
    if (/^\s*```/.test(line)) fenced = !fenced;
    else if (!fenced) lines.push({ line, number: index + 1 });
  });
  return lines;
}

/** GitHub's anchor for a heading: its text lower-cased, punctuation dropped, spaces as hyphens. */
function slug(heading) {
  const text = heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1') // a link's text
    .replace(/[`*]/g, '');
  return text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}

/** The anchors of a Markdown file's headings, repeated ones numbered as GitHub does (-1, -2...). */
function anchorsOf(file) {
  const anchors = new Set();
  const seen = new Map();
  for (const { line } of proseLines(fs.readFileSync(file, 'utf8'))) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading === null) continue;
    const base = slug(heading[1]);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** The [text](target) links of a document's prose, inline code left out. */
function linksOf(document) {
  const links = [];
  for (const { line, number } of proseLines(fs.readFileSync(path.join(repoRoot, document), 'utf8'))) {
    const prose = line.replace(/`[^`]*`/g, '');
    for (const match of prose.matchAll(/\]\(([^)\s]+)\)/g)) links.push({ target: match[1], line: number });
  }
  return links;
}

describe('links between README.md and docs/', () => {
  it('find links to check', () => {
    assert.ok(linksOf('README.md').some(({ target }) => target.startsWith('docs/')), 'README.md links to no page of docs/');
  });

  for (const document of documents()) {
    it(`${document}: every relative link resolves to a file and a heading`, () => {
      const broken = [];
      for (const { target, line } of linksOf(document)) {
        if (/^[a-z][a-z+.-]*:/i.test(target)) continue; // https:, mailto:, ...
        const [file, anchor] = target.split('#');
        const resolved = file === '' ? path.join(repoRoot, document) : path.resolve(repoRoot, path.dirname(document), decodeURIComponent(file));
        if (!fs.existsSync(resolved)) {
          broken.push(`${document} line ${line}: ${target}: no such file`);
          continue;
        }
        if (anchor === undefined) continue;
        if (!resolved.endsWith('.md')) broken.push(`${document} line ${line}: ${target}: an anchor into a file that is not Markdown`);
        else if (!anchorsOf(resolved).has(anchor)) broken.push(`${document} line ${line}: ${target}: no such heading in ${path.relative(repoRoot, resolved)}`);
      }
      assert.deepEqual(broken, []);
    });
  }
});
