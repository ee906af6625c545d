// The library build ships WGSL without comments and indentation (scripts/wgsl-minify.mjs).
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { minifyWgsl } from '../scripts/wgsl-minify.mjs';

const shaders = resolve(import.meta.dirname, '..', 'shaders');

/** Tokens of WGSL with comments removed by a different method than minifyWgsl's scanner. */
function tokens(source: string): string[] {
  let text = source;
  for (let prev = ''; prev !== text; ) {
    prev = text;
    text = text.replace(/\/\*(?:(?!\/\*|\*\/)[\s\S])*\*\//g, ' '); // innermost block comments first
  }
  return (
    text.replace(/\/\/.*$/gm, ' ').match(/[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9a-fA-FxXuifh.eE+-]*|\S/g) ?? []
  );
}

describe('minifyWgsl', () => {
  it('drops line, trailing and nested block comments, indentation and blank lines', () => {
    const source =
      '// header\nfn f() -> u32 {\n    /* a /* nested */ comment */ let x = 1u; // why\n\n  return x;\n}\n';
    expect(minifyWgsl(source)).toBe('fn f() -> u32 {\nlet x = 1u;\nreturn x;\n}\n');
  });

  it.each(readdirSync(shaders).filter((f) => f.endsWith('.wgsl')))('%s keeps every token', (file) => {
    const source = readFileSync(resolve(shaders, file), 'utf8');
    const minified = minifyWgsl(source);
    expect(tokens(minified)).toEqual(tokens(source));
    expect(minified).not.toMatch(/\/\/|\/\*|^\s/m);
    expect(minified.length).toBeLessThan(source.length);
  });
});
