// Writes dist/esm/index.mjs: the ESM entry point re-exports the CommonJS build by name, so both
// module systems share one instance of every class (instanceof works across them).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { repoRoot } from './windows-runtime.mjs';

const require = createRequire(import.meta.url);
const names = Object.keys(require(path.join(repoRoot, 'dist', 'lib', 'index.js'))).sort();
const outDir = path.join(repoRoot, 'dist', 'esm');
fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(
  path.join(outDir, 'index.mjs'),
  `import cjs from '../lib/index.js';\n\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`,
);
