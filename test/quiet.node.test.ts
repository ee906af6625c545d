// A plain Node program on the library prints nothing on stderr: no Wayland `XDG_RUNTIME_DIR`
// errors and no Dawn warnings about Vulkan drivers it rejected while looking for an adapter.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { build } from 'vite';
import { beforeAll, describe, expect, it } from 'vitest';
import { swiftShaderFlags } from '../src/node';

const root = resolve(import.meta.dirname, '..');

describe('quiet Node', () => {
  beforeAll(async () => {
    // examples/node-attention.mjs imports the package by name, i.e. dist/ (types not needed).
    await build({
      root,
      configFile: resolve(root, 'vite.config.ts'),
      logLevel: 'silent',
      build: { emptyOutDir: false },
    });
  });

  it('node examples/node-attention.mjs writes nothing to stderr', () => {
    // The environment of a fresh shell: the test setup may have chosen SwiftShader for this process.
    const env = { ...process.env };
    delete env.XDG_RUNTIME_DIR;
    if (env.VK_ICD_FILENAMES === '/usr/lib/chromium/vk_swiftshader_icd.json') delete env.VK_ICD_FILENAMES;
    const run = spawnSync(process.execPath, ['examples/node-attention.mjs'], {
      cwd: root,
      env,
      encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    // The built library (minified WGSL) still agrees with the float64 reference.
    const error = Number(/max \|gpu - float64\| = (\S+)/.exec(run.stdout)?.[1]);
    expect(error).toBeLessThan(1e-4);
  });
});

describe('swiftShaderFlags', () => {
  const toggle = 'use_vulkan_zero_initialize_workgroup_memory_extension';
  it('adds the toggle to the caller’s disable-dawn-features list, or as its own flag', () => {
    expect(swiftShaderFlags([])).toEqual([`disable-dawn-features=${toggle}`]);
    expect(swiftShaderFlags(['enable-dawn-features=allow_unsafe_apis', 'disable-dawn-features=a,b'])).toEqual(
      ['enable-dawn-features=allow_unsafe_apis', `disable-dawn-features=a,b,${toggle}`],
    );
    // an empty list gets no leading comma; a listed toggle is not repeated
    expect(swiftShaderFlags(['disable-dawn-features='])).toEqual([`disable-dawn-features=${toggle}`]);
    expect(swiftShaderFlags([`disable-dawn-features=${toggle},x`])).toEqual([
      `disable-dawn-features=${toggle},x`,
    ]);
  });
});
