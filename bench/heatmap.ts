// The page's attention-weights heatmap: a small causal example whose weights stay on the GPU
// (attention(..., { returnWeights: true }).weights.buffer) and are drawn by a render pipeline.
// Wheel zooms about the cursor, drag pans, double-click resets; wgpu-matrix builds the view matrix.
import { mat4, vec3 } from 'wgpu-matrix';
import { attention, type Context, createContext } from '../src';
import heatmapSource from './heatmap.wgsl?raw';

const L = 64;
const D = 16;

/**
 * q and k [1, 1, L, D] from sinusoidal positions (so that q_i·k_j falls off with |i - j|) plus
 * seeded noise; v random. The weights then show a band along the causal diagonal.
 */
function exampleInputs() {
  let seed = 42;
  const noise = () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
  const position = (pos: number) =>
    Array.from({ length: D }, (_, d) => {
      const freq = 1 / 1.7 ** Math.floor(d / 2);
      return 1.8 * (d % 2 ? Math.sin(freq * pos) : Math.cos(freq * pos));
    });
  const q = new Float32Array(L * D);
  const k = new Float32Array(L * D);
  const v = new Float32Array(L * D);
  for (let i = 0; i < L; i++) {
    const p = position(i);
    for (let d = 0; d < D; d++) {
      q[i * D + d] = p[d] + 0.6 * noise();
      k[i * D + d] = p[d] + 0.6 * noise();
      v[i * D + d] = noise();
    }
  }
  return { q, k, v };
}

/** Draws the example's weights into `canvas`; `status` shows the weight under the cursor. */
export async function showHeatmap(canvas: HTMLCanvasElement, status: HTMLElement): Promise<void> {
  const ctx: Context = await createContext({ label: 'heatmap' });
  const { device } = ctx;
  const data = exampleInputs();
  const q = ctx.tensor(data.q, [1, 1, L, D], { label: 'heatmap:q' });
  const k = ctx.tensor(data.k, [1, 1, L, D], { label: 'heatmap:k' });
  const v = ctx.tensor(data.v, [1, 1, L, D], { label: 'heatmap:v' });
  const { output, weights } = await attention(q, k, v, { causal: true, returnWeights: true });
  output.destroy();
  // A host copy only for the cursor read-out; the picture is drawn from weights.buffer.
  const hostWeights = (await weights!.read()) as Float32Array;

  const format = navigator.gpu.getPreferredCanvasFormat();
  const context = canvas.getContext('webgpu');
  if (!context) throw new Error('heatmap: canvas.getContext("webgpu") returned null');
  context.configure({ device, format, alphaMode: 'opaque' });
  const module = device.createShaderModule({ code: heatmapSource, label: 'heatmap' });
  const pipeline = await device.createRenderPipelineAsync({
    label: 'heatmap',
    layout: 'auto',
    vertex: { module, entryPoint: 'vs' },
    fragment: { module, entryPoint: 'fs', targets: [{ format }] },
    primitive: { topology: 'triangle-list' },
  });
  const uniforms = device.createBuffer({
    size: 80,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    label: 'heatmap:view',
  });
  const bindGroup = device.createBindGroup({
    label: 'heatmap',
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: uniforms } },
      { binding: 1, resource: { buffer: weights!.buffer } },
    ],
  });

  // The square keeps its aspect (fit) and then takes the user's zoom and pan (user).
  let user = mat4.identity();
  const fitSquare = () => {
    const s = Math.min(canvas.width, canvas.height) * 0.9;
    return mat4.scaling([s / canvas.width, s / canvas.height, 1]);
  };
  const matrix = () => mat4.multiply(user, fitSquare());

  const draw = () => {
    const u = new ArrayBuffer(80);
    new Float32Array(u, 0, 16).set(matrix());
    new Uint32Array(u, 64, 3).set([L, L, 0]);
    device.queue.writeBuffer(uniforms, 0, u);
    const encoder = device.createCommandEncoder({ label: 'heatmap' });
    const pass = encoder.beginRenderPass({
      label: 'heatmap',
      colorAttachments: [
        {
          view: context.getCurrentTexture().createView(),
          clearValue: { r: 0.12, g: 0.12, b: 0.14, a: 1 },
          loadOp: 'clear',
          storeOp: 'store',
        },
      ],
    });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.draw(6);
    pass.end();
    device.queue.submit([encoder.finish()]);
  };

  /** Mouse position in clip space. */
  const clip = (e: MouseEvent) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) / r.width) * 2 - 1, 1 - ((e.clientY - r.top) / r.height) * 2];
  };
  canvas.addEventListener(
    'wheel',
    (e) => {
      e.preventDefault();
      const [x, y] = clip(e);
      const f = Math.exp(-e.deltaY * 0.0015);
      const about = mat4.multiply(
        mat4.translation([x, y, 0]),
        mat4.multiply(mat4.scaling([f, f, 1]), mat4.translation([-x, -y, 0])),
      );
      user = mat4.multiply(about, user);
      draw();
    },
    { passive: false },
  );
  let drag: number[] | undefined;
  canvas.addEventListener('pointerdown', (e) => {
    drag = clip(e);
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener('pointerup', () => {
    drag = undefined;
  });
  canvas.addEventListener('pointermove', (e) => {
    const [x, y] = clip(e);
    if (drag) {
      user = mat4.multiply(mat4.translation([x - drag[0], y - drag[1], 0]), user);
      drag = [x, y];
      draw();
    }
    const p = vec3.transformMat4([x, y, 0], mat4.inverse(matrix()));
    const col = Math.floor(((p[0] + 1) / 2) * L);
    const row = Math.floor(((1 - p[1]) / 2) * L);
    status.textContent =
      row >= 0 && row < L && col >= 0 && col < L
        ? `query ${row}, key ${col}: weight ${hostWeights[row * L + col].toFixed(4)}`
        : 'wheel: zoom, drag: pan, double-click: reset';
  });
  canvas.addEventListener('dblclick', () => {
    user = mat4.identity();
    draw();
  });

  draw();
  await device.queue.onSubmittedWorkDone();
  status.textContent = `1 head, L = ${L}, D = ${D}, causal; colour = sqrt(weight / row max). Wheel: zoom, drag: pan, double-click: reset`;
}
