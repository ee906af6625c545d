// Post-build step of `npm run build`: make the declarations in dist/types resolve under
// `moduleResolution: nodenext` as well as `bundler`, without changing the sources.
// - Relative specifiers get the extension Node needs: './tensor' -> './tensor.js',
//   './reference' (a folder) -> './reference/index.js'. tsc keeps the sources' extensionless
//   specifiers, which `nodenext` cannot resolve, so every imported type would become `any`.
// - Files that name WebGPU types (GPUDevice, GPUBuffer...) reference @webgpu/types, which is a
//   dependency of the package, so consumers get those globals without configuring anything.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const root = resolve(process.argv[2] ?? join(import.meta.dirname, '..', 'dist', 'types'));
const SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.\.?(?:\/[^'"]*)?)\2/g;
const WEBGPU_REFERENCE = '/// <reference types="@webgpu/types" />\n';

function* declarationFiles(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* declarationFiles(path);
    else if (name.endsWith('.d.ts')) yield path;
  }
}

function withExtension(file, specifier) {
  if (/\.(m|c)?js$/.test(specifier)) return specifier;
  const target = resolve(dirname(file), specifier);
  if (existsSync(`${target}.d.ts`)) return `${specifier}.js`;
  if (existsSync(join(target, 'index.d.ts'))) return `${specifier.replace(/\/$/, '')}/index.js`;
  throw new Error(`fix-dts: ${file}: cannot resolve '${specifier}'`);
}

let changed = 0;
for (const file of declarationFiles(root)) {
  const text = readFileSync(file, 'utf8');
  let out = text.replace(
    SPECIFIER,
    (_, head, quote, spec) => `${head}${quote}${withExtension(file, spec)}${quote}`,
  );
  if (/\bGPU[A-Z]\w*/.test(out) && !out.includes(WEBGPU_REFERENCE)) out = WEBGPU_REFERENCE + out;
  if (out !== text) {
    writeFileSync(file, out);
    changed++;
  }
}
console.log(`fix-dts: rewrote ${changed} declaration files in ${root}`);
