// The library build ships WGSL without comments and indentation (scripts/wgsl-minify.mjs).
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { minifyWgsl } from '../scripts/wgsl-minify.mjs';
import { declaredTwice } from '../src/program';

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

// The runner names a module-scope name declared twice (a snippet's or modData's against the
// kernel's): it must see only module scope, also in shipped WGSL, whose locals start their lines.
describe('declaredTwice', () => {
  const files = readdirSync(shaders).filter((f) => f.endsWith('.wgsl'));
  it.each(files)('%s, as written and minified, declares nothing twice', (file) => {
    const source = readFileSync(resolve(shaders, file), 'utf8');
    expect(declaredTwice(source)).toBeUndefined();
    expect(declaredTwice(minifyWgsl(source))).toBeUndefined();
  });
  it('finds module-scope clashes, not locals or struct fields of the same names', () => {
    const locals =
      'struct S {\nlo: u32,\n}\nfn f() -> u32 {\nvar lo = 1u;\nconst k = 2u;\nreturn lo + k;\n}\n';
    expect(declaredTwice(`${locals}fn g() {\nvar lo = 0u; // fn lo\n/* const k */\n}`)).toBeUndefined();
    expect(
      declaredTwice(`${locals}@group(0) @binding(1) var<storage, read> lo: array<u32>;`),
    ).toBeUndefined();
    expect(declaredTwice(`${locals}fn f(index: u32) -> f32 { return 0.0; }`)).toBe('f');
    expect(
      declaredTwice(`const k = 1u;\n${locals}@group(0) @binding(2) var<storage, read> k: array<u32>;`),
    ).toBe('k');
  });
});
