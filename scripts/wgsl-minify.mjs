// WGSL as shipped: comments and indentation removed from `?raw` imports of shaders/*.wgsl.
// Used by the library build (vite.config.ts) and by `npm run size`; the tests and the benchmark
// page import the shaders unchanged.

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
      if (source[i] === '\n') out += '\n';
    } else if (source.startsWith('//', i)) {
      const end = source.indexOf('\n', i);
      i = (end === -1 ? source.length : end) - 1;
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
