// WGSL as shipped: comments and indentation removed from `?raw` imports of shaders/*.wgsl.
// Used by the library build (vite.config.ts) and by `npm run size`; the tests and the benchmark
// page import the shaders unchanged.

/** Lines src/ splits a shader on (src/ops/decode_attention.ts): kept as they are. */
const SECTION_MARKER = /^\/\/ ==== .* ====$/;

/**
 * Removes `//` and (nested) `/* *\/` comments, leading and trailing whitespace and blank lines.
 * WGSL has no string literals, so a `//` or `/*` outside a comment always starts one.
 */
export function minifyWgsl(source) {
  let out = '';
  let depth = 0;
  for (let i = 0; i < source.length; i++) {
    if (source.startsWith('/*', i)) {
      depth++;
      i++;
    } else if (depth > 0) {
      if (source.startsWith('*/', i)) {
        depth--;
        i++;
      }
      if (source[i] === '\n') out += '\n'; // keep line structure for the markers
    } else if (source.startsWith('//', i)) {
      const end = source.indexOf('\n', i) === -1 ? source.length : source.indexOf('\n', i);
      const lineStart = source.lastIndexOf('\n', i - 1) + 1;
      const line = source.slice(lineStart, end).trim();
      if (SECTION_MARKER.test(line)) out += line;
      i = end - 1;
    } else {
      out += source[i];
    }
  }
  const lines = out
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  return `${lines.join('\n')}\n`;
}

/** Vite plugin: `import src from '.../shaders/x.wgsl?raw'` gets {@link minifyWgsl}(x.wgsl). */
export function wgslMinify() {
  return {
    name: 'webgpu-attention:wgsl-minify',
    enforce: 'pre',
    async load(id) {
      const [file, query] = id.split('?');
      if (query !== 'raw' || !/[\\/]shaders[\\/][^\\/]+\.wgsl$/.test(file)) return null;
      const { readFile } = await import('node:fs/promises');
      this.addWatchFile(file);
      return `export default ${JSON.stringify(minifyWgsl(await readFile(file, 'utf8')))};`;
    },
  };
}
