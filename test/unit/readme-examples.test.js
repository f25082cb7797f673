'use strict';
// The JavaScript and TypeScript examples of README.md and docs/*.md type-check under `tsc --strict`
// against the package's built types (package.json "types"), as a user's editor would check them.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const ts = require('typescript');

const repoRoot = path.resolve(__dirname, '..', '..');
const packageJson = require('../../package.json');

/** The documents whose examples are checked, relative to the repository. */
function documents() {
  const docs = fs.readdirSync(path.join(repoRoot, 'docs')).filter((name) => name.endsWith('.md')).sort();
  return ['README.md', ...docs.map((name) => `docs/${name}`)];
}

/** Each ```js / ```ts block of a document, with the document and the line it starts on. */
function examplesOf(document) {
  const lines = fs.readFileSync(path.join(repoRoot, document), 'utf8').split('\n');
  const examples = [];
  for (let i = 0; i < lines.length; i += 1) {
    const fence = /^```(js|ts)\s*$/.exec(lines[i]);
    if (fence === null) continue;
    const start = i + 1;
    while (i + 1 < lines.length && lines[i + 1] !== '```') i += 1;
    examples.push({ document, language: fence[1], line: start + 1, code: lines.slice(start, i + 1).join('\n') });
    i += 1;
  }
  return examples;
}

// What the examples leave to the reader: an open port and a few helpers of the agent's own.
const readerContext = `
import type { FilterPort } from 'fltport';
declare global {
  const port: FilterPort;
  const signal: AbortSignal;
  function verdictFor(data: Buffer): Uint8Array;
  function log(...values: unknown[]): void;
  const bigPayload: Uint8Array;
}
`;

/**
 * An example as a module of its own: its imports go on top (blank lines keep its line numbers),
 * the rest becomes the body of an async function (examples use top-level await, which CommonJS
 * does not parse). The example's line i is the module's line i + WRAPPER_LINES.
 */
const WRAPPER_LINES = 3;
function asModule({ code, language }) {
  const lines = code.split('\n');
  const isImport = (line) => /^import\s/.test(line);
  const imports = lines.filter(isImport).join(' ');
  const returns = language === 'ts' ? ': Promise<void>' : '';
  const body = lines.map((line) => (isImport(line) ? '' : line)).join('\n');
  return `${imports}\nexport {};\nasync function readmeExample()${returns} {\n${body}\n}\nvoid readmeExample;\n`;
}

describe('README and docs/ examples', function () {
  this.timeout(180000); // a TypeScript program: seconds, more on a loaded machine

  it('type-check under --strict against the built package types', function () {
    const typesFile = path.join(repoRoot, packageJson.types);
    if (!fs.existsSync(typesFile)) assert.fail(`${packageJson.types} is missing: run npm run build:ts first`);
    const examples = documents().flatMap(examplesOf);
    const inReadme = examples.filter((example) => example.document === 'README.md').length;
    assert.ok(inReadme >= 5, `found only ${inReadme} examples in README.md`);
    assert.ok(examples.some((example) => example.document === 'docs/api.md'), 'found no example in docs/api.md');

    // Virtual files beside this test, so that koffi and @types/node resolve from the repository.
    const files = new Map([[path.join(__dirname, 'readme-reader-context.d.ts'), readerContext]]);
    const fileFor = new Map();
    for (const example of examples) {
      const name = example.document.replace(/[/.]/g, '-');
      const file = path.join(__dirname, `${name}-line-${example.line}.${example.language === 'ts' ? 'ts' : 'js'}`);
      files.set(file, asModule(example));
      fileFor.set(file, example);
    }
    const options = {
      strict: true,
      skipLibCheck: true, // the examples are under test, not the declaration files
      noEmit: true,
      allowJs: true,
      checkJs: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      types: ['node'],
      baseUrl: repoRoot,
      paths: { fltport: [packageJson.types] },
    };
    const host = ts.createCompilerHost(options);
    const { fileExists, readFile, getSourceFile } = host;
    host.fileExists = (file) => files.has(path.resolve(file)) || fileExists.call(host, file);
    host.readFile = (file) => files.get(path.resolve(file)) ?? readFile.call(host, file);
    host.getSourceFile = (file, languageVersion, ...rest) => {
      const text = files.get(path.resolve(file));
      return text === undefined ? getSourceFile.call(host, file, languageVersion, ...rest) : ts.createSourceFile(file, text, languageVersion, true);
    };
    const program = ts.createProgram([...files.keys()], options, host);
    const problems = ts.getPreEmitDiagnostics(program).map((diagnostic) => {
      const text = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
      const file = diagnostic.file === undefined ? undefined : path.resolve(diagnostic.file.fileName);
      const example = file === undefined ? undefined : fileFor.get(file);
      if (example === undefined || diagnostic.start === undefined) return `${file ?? ''}: ${text}`;
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
      return `${example.document} line ${example.line + line - WRAPPER_LINES}: ${text}`;
    });
    assert.deepEqual(problems, []);
  });
});
