// Packs the Node benchmark for a machine that has a GPU but no Node and no network (a lent
// machine, see DESIGN.md): writes .gpu/ (git-ignored) with the benchmark bundled into one file by
// Vite (the library's sources and WGSL included), the `webgpu` package's entry with Dawn for
// linux-x64 (xz), onnxruntime-web's WebGPU build with its wasm (xz; the peer), this Node binary
// (xz), the Vulkan loader's .deb and the sources' commit.
// bench/gpu_run.sh runs it there. Usage: node scripts/gpu-pack.mjs
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, '.gpu');
/** What may travel to the lent machine with the working tree (its limit is 64 MiB in all). */
const MAX_BYTES = 56 * 2 ** 20;

const sh = (cmd, args, options = {}) => execFileSync(cmd, args, { cwd: root, encoding: 'utf8', ...options });
const xz = (from, to) =>
  writeFileSync(to, execFileSync('xz', ['-T0', '-6', '-c', from], { maxBuffer: 2 ** 30 }));

rmSync(out, { recursive: true, force: true });
mkdirSync(out);

console.log('bundling bench/node_bundle.mjs');
await build({
  configFile: false,
  root,
  logLevel: 'warn',
  build: {
    ssr: 'bench/node_bundle.mjs',
    outDir: join(out, 'bench'),
    target: 'node20',
    minify: false,
    rollupOptions: { output: { format: 'es', entryFileNames: 'bench-node.mjs' } },
  },
  // everything inlined but Dawn and onnxruntime-web (which loads its wasm from beside itself),
  // which gpu_run.sh unpacks beside it
  ssr: { noExternal: true, external: ['webgpu', 'onnxruntime-web/webgpu'] },
});

console.log('webgpu (Dawn, linux-x64)');
const webgpu = join(root, 'node_modules', 'webgpu');
const dest = join(out, 'node_modules', 'webgpu');
mkdirSync(join(dest, 'dist', 'linux-x64'), { recursive: true });
for (const f of ['package.json', 'index.js']) copyFileSync(join(webgpu, f), join(dest, f));
xz(join(webgpu, 'dist', 'linux-x64', 'dawn.node'), join(out, 'dawn.node.xz'));

console.log('onnxruntime-web (WebGPU build, asyncify wasm)');
const ort = join(root, 'node_modules', 'onnxruntime-web');
const ortDest = join(out, 'node_modules', 'onnxruntime-web');
mkdirSync(join(ortDest, 'dist'), { recursive: true });
for (const f of [
  'package.json',
  'dist/ort.webgpu.bundle.min.mjs',
  'dist/ort-wasm-simd-threaded.asyncify.mjs',
]) {
  copyFileSync(join(ort, f), join(ortDest, f));
}
xz(join(ort, 'dist', 'ort-wasm-simd-threaded.asyncify.wasm'), join(out, 'ort-wasm.xz'));

console.log(`node ${process.version}`);
xz(process.execPath, join(out, 'node.xz'));

// NVIDIA's Vulkan driver is loaded through libGLX_nvidia, which needs GLVND: without these the
// loader reports "Found no drivers" on a lent H200 (checked)
const LOADERS = ['libvulkan1', 'libglvnd0', 'libgl1', 'libglx0', 'libegl1', 'libopengl0', 'libgles2'];
console.log(`the Vulkan and GL loaders (${LOADERS.join(', ')})`);
try {
  sh('apt-get', ['download', ...LOADERS], { cwd: out, stdio: 'pipe' });
} catch (e) {
  console.warn(`apt-get download failed (${e.message.split('\n')[0]}): the machine must have them`);
}

let sources = 'unknown';
try {
  const dirty = sh('git', ['status', '--porcelain', '--', 'src', 'shaders', 'bench']).trim() !== '';
  sources = `${sh('git', ['rev-parse', '--short', 'HEAD']).trim()}${dirty ? '+changes' : ''}`;
} catch {}
writeFileSync(join(out, 'sources'), `${sources}\n`);

const size = (p) =>
  statSync(p).isDirectory() ? readdirSync(p).reduce((n, f) => n + size(join(p, f)), 0) : statSync(p).size;
const bytes = size(out);
console.log(`.gpu: ${(bytes / 2 ** 20).toFixed(1)} MiB (sources ${sources})`);
if (bytes > MAX_BYTES) {
  console.error(`.gpu is larger than ${MAX_BYTES / 2 ** 20} MiB: it would not travel with the working tree`);
  process.exit(1);
}
