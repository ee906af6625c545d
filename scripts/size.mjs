// `npm run size`: what `attention` costs an app. Bundles `export { attention, createContext }`
// from the library (WGSL minified as in the library build) with Vite, minified, and prints the
// raw and gzip sizes, next to the whole entry point for comparison.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'vite';
import { wgslMinify } from './wgsl-minify.mjs';

const root = resolve(import.meta.dirname, '..');
const index = resolve(root, 'src', 'index.ts');
const ENTRIES = {
  'attention + createContext': `export { attention, createContext } from ${JSON.stringify(index)};`,
  'whole package entry': `export * from ${JSON.stringify(index)};`,
};

async function bundle(code) {
  const dir = mkdtempSync(join(tmpdir(), 'webgpu-attention-size-'));
  try {
    const entry = join(dir, 'entry.js');
    writeFileSync(entry, code);
    const output = await build({
      root,
      configFile: false,
      logLevel: 'silent',
      plugins: [wgslMinify()],
      build: {
        write: false,
        minify: true,
        target: 'es2022',
        lib: { entry, formats: ['es'], fileName: 'size' },
        rolldownOptions: { external: ['webgpu', /^node:/] },
      },
    });
    const chunks = (Array.isArray(output) ? output : [output])
      .flatMap((o) => o.output)
      .filter((c) => c.type === 'chunk');
    return Buffer.concat(chunks.map((c) => Buffer.from(c.code)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const kb = (n) => `${(n / 1024).toFixed(1)} kB`;
for (const [name, code] of Object.entries(ENTRIES)) {
  const bytes = await bundle(code);
  console.log(
    `${name.padEnd(26)} ${kb(bytes.length).padStart(9)} minified, ${kb(gzipSync(bytes, { level: 9 }).length).padStart(8)} gzip`,
  );
}
