import crossEntropySource from '../../shaders/cross_entropy.wgsl?raw';
import crossEntropyReduceSource from '../../shaders/cross_entropy_reduce.wgsl?raw';
import workgroupSumSource from '../../shaders/workgroup_sum.wgsl?raw';
import { checkOptions } from '../checks';
import type { IntTensor } from '../int_tensor';
import { RUN_OPTION_KEYS, type RunOptions } from '../options';
import { Recording } from '../program';
import { fmt } from '../shape';
import type { Tensor } from '../tensor';
import { checkResults, resultTensor, submitOrFree } from './output';
import { checkF32, rowLayout } from './train_common';

/** Where the work and the results of softmaxCrossEntropy go. */
export interface SoftmaxCrossEntropyOptions extends RunOptions {
  /** Write the results into these 'f32' tensors ([1], logits' shape) instead of new ones. */
  out?: { loss?: Tensor; dlogits?: Tensor };
}

export interface SoftmaxCrossEntropyResult {
  /** [1], the mean over rows whose target is not -1 of -log softmax(logits)[target]; NaN if none. */
  loss: Tensor;
  /** [..., V], d loss / d logits = (softmax - onehot(target)) / count; zero rows where ignored. */
  dlogits: Tensor;
}

/** Invocations of the one-workgroup sums. */
const REDUCE_WG = 256;

/**
 * PyTorch's cross_entropy(logits, targets, ignore_index=-1) (mean reduction) fused with its
 * gradient, on the GPU in f32: logits [..., V], targets [...] (an {@link IntTensor}; -1 = ignore)
 * -> the mean loss and dlogits in one call. Each row's log-sum-exp subtracts the row's max first.
 * The sums over rows run in a fixed order (no atomics). A target outside [-1, V) makes its row of
 * dlogits and the loss NaN (the GPU cannot throw).
 *
 * @example
 * const { loss, dlogits } = await softmaxCrossEntropy(logits, targets);
 * console.log((await loss.read())[0]);
 */
export async function softmaxCrossEntropy(
  logits: Tensor,
  targets: IntTensor,
  options: SoftmaxCrossEntropyOptions = {},
): Promise<SoftmaxCrossEntropyResult> {
  checkOptions('softmaxCrossEntropy', options, ['out', ...RUN_OPTION_KEYS]);
  const { out } = options;
  checkResults('softmaxCrossEntropy', out, ['loss', 'dlogits']);
  checkF32('softmaxCrossEntropy', 'logits', logits, logits?.ctx);
  if (
    targets === undefined ||
    targets === null ||
    typeof targets.assertUsable !== 'function' ||
    'dtype' in targets
  ) {
    throw new Error('softmaxCrossEntropy: targets must be an IntTensor (see intTensor)');
  }
  targets.assertUsable('softmaxCrossEntropy: targets', logits.ctx);
  const V = logits.shape[logits.rank - 1];
  if (fmt(logits.shape) !== fmt([...targets.shape, V])) {
    throw new Error(
      `softmaxCrossEntropy: logits must have shape [${[...targets.shape, 'V'].join(', ')}] (targets' shape, then classes), received ${fmt(logits.shape)}`,
    );
  }
  const { ctx } = logits;
  const rows = targets.size;
  const rec = new Recording(ctx, 'softmaxCrossEntropy');
  rec.watch(logits, out?.loss, out?.dlogits);
  const loss = resultTensor(ctx, rec, 'softmaxCrossEntropy: out.loss', out?.loss, [1], 'f32');
  let dlogits: Tensor;
  try {
    dlogits = resultTensor(ctx, rec, 'softmaxCrossEntropy: out.dlogits', out?.dlogits, logits.shape, 'f32');
  } catch (e) {
    if (loss !== out?.loss) loss.destroy();
    throw e;
  }
  const stats = rec.buffer(8, 'softmaxCrossEntropy:stats'); // (1 / count, count)
  const rowLoss = rec.buffer(rows * 4, 'softmaxCrossEntropy:rowLoss');
  const reduce = (stage: number) =>
    rec.dispatch({
      name: 'cross_entropy_reduce',
      sources: [crossEntropyReduceSource, workgroupSumSource],
      constants: { WG: REDUCE_WG, STAGE: stage },
      uniforms: { rows },
      bindings: [targets.binding, rowLoss, stats, loss.binding],
      workgroups: 1,
    });
  reduce(0);
  const layout = rowLayout(ctx, V <= 1024 ? 32 : 128);
  rec.dispatch({
    name: 'cross_entropy',
    sources: [crossEntropySource, layout.source],
    constants: { WG: layout.WG },
    uniforms: { V, rows },
    bindings: [logits.binding, targets.binding, stats, rowLoss, dlogits.binding],
    workgroups: layout.workgroups(rows),
  });
  reduce(1);
  await submitOrFree(rec, options.encoder, [
    loss !== out?.loss ? loss : undefined,
    dlogits !== out?.dlogits ? dlogits : undefined,
  ]);
  return { loss, dlogits };
}
