// Validation of the WGSL snippets of attention's scoreMod and maskMod (and the backward's
// scoreModGrad and modDataGrad): their signatures are
// checked with the other options (attention_plan.ts); here each text is compiled on its own (with
// stand-ins for modData's functions), before any pipeline is built, so that an error shows the
// user's line and the compiler's message rather than a pipeline failure deep inside a kernel.
import type { Context } from '../context';
import { type AttentionOptions, modDataGradFunctions, modDataSource } from './attention_plan';

/** Snippet texts compiled on a device: the error message, or '' when it compiled. */
const compiled = new WeakMap<GPUDevice, Map<string, Promise<string>>>();

/**
 * Throws a readable error when modData's names or scoreMod, maskMod, scoreModGrad or modDataGrad do not
 * compile; `prefix` goes before the option's name in the message.
 */
export async function checkSnippets(
  ctx: Context,
  options: Pick<AttentionOptions, 'scoreMod' | 'maskMod' | 'modData'> & {
    scoreModGrad?: string;
    modDataGrad?: string;
  },
  prefix = 'attention: options.',
): Promise<void> {
  // after the snippet, so that the snippet's lines keep their numbers
  const stubs = modDataSource(options.modData, true);
  if (stubs) {
    const error = await compileSnippet(ctx, stubs);
    if (error) throw new Error(`${prefix}modData: a name does not compile as a WGSL function:\n${error}`);
  }
  // modDataGrad also calls the gradient functions of modData's f32 entries
  const gradStubs =
    options.modDataGrad === undefined ? '' : `${stubs}\n${modDataGradFunctions(options.modData, true)}`;
  for (const name of ['scoreMod', 'maskMod', 'scoreModGrad', 'modDataGrad'] as const) {
    const text = options[name];
    if (text === undefined) continue;
    const after = name === 'modDataGrad' ? gradStubs : stubs;
    const error = await compileSnippet(ctx, after ? `${text}\n${after}` : text);
    if (error) throw new Error(`${prefix}${name} does not compile:\n${error}`);
  }
}

function compileSnippet(ctx: Context, text: string): Promise<string> {
  let cache = compiled.get(ctx.device);
  if (!cache) {
    cache = new Map();
    compiled.set(ctx.device, cache);
  }
  let result = cache.get(text);
  if (!result) {
    result = compile(ctx.device, text);
    cache.set(text, result);
  }
  return result;
}

/** Compiles `text` alone (its lines keep their numbers) and describes each error it gets. */
async function compile(device: GPUDevice, text: string): Promise<string> {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: text, label: 'attention:snippet' });
  const info = await module.getCompilationInfo();
  await device.popErrorScope();
  const lines = text.split('\n');
  return info.messages
    .filter((m) => m.type === 'error')
    .map((m) => {
      const line = lines[m.lineNum - 1];
      const where = m.lineNum ? `line ${m.lineNum}:${m.linePos}: ` : '';
      const caret = line === undefined ? '' : `\n  ${line}\n  ${' '.repeat(Math.max(0, m.linePos - 1))}^`;
      return `${where}${m.message}${caret}`;
    })
    .join('\n');
}
