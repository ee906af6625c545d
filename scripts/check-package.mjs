// `npm run check:package`: build, pack, and check the tarball as a consumer gets it.
// 1. publint on the tarball (package.json fields, exports, files).
// 2. @arethetypeswrong/cli on the tarball, offline (--no-definitely-typed), profile esm-only:
//    the package is ESM-only, so CommonJS `require` resolution is not a goal.
// 3. test/fixture-consumer: the tarball unpacked into node_modules of a temp project (with the
//    package's declared dependencies linked from this checkout: no network), consumer.ts
//    typechecked strictly under `nodenext` and `bundler` resolution (a typo in an option must
//    fail to compile), then compiled and run under Node, and `require()` of the package checked.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);
const started = performance.now();

function run(command, args, options = {}) {
  console.log(`check:package: ${[command, ...args].map((a) => a.replace(root, '.')).join(' ')}`);
  return execFileSync(command, args, { cwd: root, stdio: 'inherit', ...options });
}

const tmp = mkdtempSync(join(tmpdir(), 'webgpu-attention-package-'));
try {
  if (!process.argv.includes('--no-build')) run('npm', ['run', '--silent', 'build']);
  const packed = JSON.parse(
    execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], {
      cwd: root,
      encoding: 'utf8',
    }),
  )[0];
  const tarball = join(tmp, packed.filename);
  const files = packed.files.map((f) => f.path);
  console.log(`check:package: ${packed.filename}: ${files.length} files, ${packed.size} bytes`);
  for (const needed of ['LICENSE', 'README.md', 'dist/index.js', 'dist/types/index.d.ts', 'dist/node.js']) {
    if (!files.includes(needed)) throw new Error(`check:package: the tarball lacks ${needed}`);
  }
  const stray = files.filter((f) => !/^(dist\/|LICENSE$|README\.md$|package\.json$)/.test(f));
  if (stray.length) throw new Error(`check:package: unexpected files in the tarball: ${stray.join(', ')}`);

  run(bin('publint'), ['run', tarball, '--strict']);
  run(bin('attw'), [tarball, '--profile', 'esm-only', '--no-definitely-typed', '--format', 'table-flipped']);

  // The consumer project: the fixture's files, the tarball as node_modules/webgpu-attention.
  const app = join(tmp, 'app');
  cpSync(join(root, 'test', 'fixture-consumer'), app, { recursive: true });
  const pkgDir = join(app, 'node_modules', 'webgpu-attention');
  mkdirSync(pkgDir, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', pkgDir, '--strip-components=1']);
  const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  // Its dependencies (and the optional peer `webgpu`, for the ./node entry) from this checkout.
  for (const dep of [...Object.keys(manifest.dependencies ?? {}), 'webgpu']) {
    mkdirSync(join(app, 'node_modules', dep, '..'), { recursive: true });
    symlinkSync(join(root, 'node_modules', dep), join(app, 'node_modules', dep), 'dir');
  }
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  run(process.execPath, [tsc, '-p', join(app, 'tsconfig.bundler.json')], { cwd: app });
  run(process.execPath, [tsc, '-p', join(app, 'tsconfig.nodenext.json')], { cwd: app });
  run(process.execPath, [join(app, 'out', 'consumer.js')], { cwd: app });
  run(
    process.execPath,
    [
      '--no-warnings',
      '--input-type=commonjs',
      '-e',
      "const m = require('webgpu-attention'); if (typeof m.attention !== 'function') process.exit(1); console.log('require() ok')",
    ],
    { cwd: app },
  );
  console.log(`check:package: ok in ${((performance.now() - started) / 1000).toFixed(1)} s`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
