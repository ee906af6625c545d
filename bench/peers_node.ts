// Peers in the Node benchmark (bench:node): onnxruntime-web's WebGPU MultiHeadAttention on the same
// adapter through Dawn, with and without the adapter's subgroups, as the page runs it
// (bench/impl/ort.ts). Each is checked against the float64 reference on a small shape of the same
// kind (bench/shapes.ts checkShape), then timed by the wall clock until its device is idle (it
// exposes no GPU time), like our forms' "median ms".
import { deviceWithout, ortGqaWebgpu, ortInNode, ortWebgpu } from './impl/ort';
import type { BenchInputs, Impl } from './impl/types';
import { attentionBytes, attentionFlops, type Roofs, roofFraction } from './roofs';
import { type BenchShape, checkKey, checkShape } from './shapes';
import type { SparsePeers } from './sparse';
import { benchInputs, CHECK_TOL, checkError, median, referenceOutput, timeCalls } from './timing';

export interface PeerRow {
  shape: string;
  peer: string;
  status: 'ok' | 'wrong' | 'error';
  note?: string;
  /** Largest |out - ref| / (1 + |ref|) of the check. */
  checkErr?: number;
  runs?: number;
  /** Wall time of a call until the device is idle. */
  medianMs?: number;
  gflops?: number;
  gbps?: number;
  /** Of the bounding roof, from the wall time. */
  roofFraction?: number;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);

/**
 * The peers on the adapter of `gpu`, each on a device of its own with the adapter's limits:
 * onnxruntime-web with the adapter's subgroups (where it has them) and without.
 */
export class NodePeers {
  readonly peers: Impl[] = [];
  /**
   * The sparse section's peers (bench/sparse.ts), on the device without subgroups as the page
   * runs them: MultiHeadAttention with the pattern as attention_bias, GroupQueryAttention's window.
   */
  sparse: SparsePeers = {};
  /** WebGPU errors the peers' devices raised, in order. */
  private readonly errors: string[] = [];
  /** Checks by peer and kind of shape (prefill lengths share one). */
  private readonly checks = new Map<string, { err: number } | { error: string }>();

  private constructor(
    private readonly o: { repeats: number; rowBudgetS: number },
    private readonly roofs: Roofs,
  ) {}

  static async create(
    gpu: GPU,
    o: { repeats: number; rowBudgetS: number },
    roofs: Roofs,
  ): Promise<NodePeers> {
    const peers = new NodePeers(o, roofs);
    const device = async (drop: string | undefined, label: string) => {
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) throw new Error(`${label}: requestAdapter() returned null`);
      const d = await deviceWithout(adapter, drop, label);
      d.addEventListener('uncapturederror', (e) => {
        peers.errors.push((e as GPUUncapturedErrorEvent).error.message);
      });
      ortInNode(gpu, d);
      return d;
    };
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    const subgroups = adapter?.features.has('subgroups') === true;
    if (subgroups) {
      const label = 'onnxruntime-web WebGPU, subgroups on';
      peers.peers.push(ortWebgpu(await device(undefined, 'ort-subgroups'), 'ort-subgroups', label));
    }
    const label = subgroups ? 'onnxruntime-web WebGPU, subgroups off' : 'onnxruntime-web WebGPU';
    const plain = await device('subgroup', 'ort');
    const ort = ortWebgpu(plain, 'ort', label);
    peers.peers.push(ort);
    peers.sparse = { bias: ort, window: ortGqaWebgpu(plain, 'ort-gqa', label) };
    return peers;
  }

  /** Checks `peer` on the kind of `s` (once per kind), then times it on `inputs`. */
  async time(peer: Impl, s: BenchShape, inputs: BenchInputs): Promise<PeerRow> {
    const base = { shape: s.name, peer: peer.label };
    const checked = await this.check(peer, s);
    if ('error' in checked) return { ...base, status: 'error', note: checked.error };
    if (!(checked.err <= CHECK_TOL)) {
      const note = `wrong on this adapter: error ${checked.err.toExponential(1)} > ${CHECK_TOL}`;
      return { ...base, status: 'wrong', checkErr: checked.err, note };
    }
    try {
      const errors = this.errors.length;
      const prepared = await peer.prepare(inputs);
      try {
        const { samples, runs } = await timeCalls(prepared.run, { warmup: 1, ...this.o });
        if (this.errors.length > errors) {
          return { ...base, status: 'error', note: `WebGPU error: ${this.errors[errors]}` };
        }
        const ms = median(samples);
        return {
          ...base,
          status: 'ok',
          note: peer.note?.(s),
          checkErr: checked.err,
          runs,
          medianMs: ms,
          gflops: attentionFlops(s) / ms / 1e6,
          gbps: attentionBytes(s) / ms / 1e6,
          roofFraction: roofFraction(s, ms, this.roofs).fraction,
        };
      } finally {
        prepared.dispose();
      }
    } catch (e) {
      return { ...base, status: 'error', note: message(e) };
    }
  }

  private async check(peer: Impl, s: BenchShape): Promise<{ err: number } | { error: string }> {
    const key = `${peer.id}|${checkKey(s)}`;
    let result = this.checks.get(key);
    if (result) return result;
    const inputs = benchInputs(checkShape(s), 7);
    try {
      const errors = this.errors.length;
      const prepared = await peer.prepare(inputs);
      try {
        result = { err: checkError(await prepared.output(), referenceOutput(inputs)) };
        await prepared.device?.queue.onSubmittedWorkDone();
        if (this.errors.length > errors) result = { error: `WebGPU error: ${this.errors[errors]}` };
      } finally {
        prepared.dispose();
      }
    } catch (e) {
      result = { error: message(e) };
    }
    this.checks.set(key, result);
    return result;
  }

  dispose(): void {
    for (const p of this.peers) p.dispose();
  }
}
