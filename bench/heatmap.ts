// The page's attention-weights heatmap: a small causal example whose weights stay on the GPU
// (attention(..., { returnWeights: true }).weights.buffer) and are drawn by a render pipeline.
// Wheel zooms about the cursor, drag pans, double-click resets; wgpu-matrix builds the view matrix.
import { mat4, vec3 } from 'wgpu-matrix';
import { attention, type Context, createContext, seededRandom } from '../src';
import heatmapSource from './heatmap.wgsl?raw';

const L = 64;
const D = 16;

/** The five viridis stops of heatmap.wgsl (keep the two in step), from t = 0 to t = 1. */
export const VIRIDIS: readonly (readonly [number, number, number])[] = [
  [0.267, 0.005, 0.329],
  [0.231, 0.322, 0.545],
  [0.129, 0.569, 0.549],
  [0.369, 0.788, 0.384],
  [0.992, 0.906, 0.145],
];

/**
 * The heatmap's colour scale into `el`: a vertical bar (t = 0 at the bottom) with ticks in
 * weight / row max; the shader's t is sqrt(weight / row max), so the ticks sit at sqrt(value).
 */
export function drawColourScale(el: HTMLElement): void {
  const css = ([r, g, b]: readonly number[]) => `rgb(${r * 255} ${g * 255} ${b * 255})`;
  const bar = document.createElement('div');
  bar.className = 'scale-bar';
  bar.style.background = `linear-gradient(to top, ${VIRIDIS.map(
    (c, i) => `${css(c)} ${(i / (VIRIDIS.length - 1)) * 100}%`,
  ).join(', ')})`;
  const ticks = [0, 0.05, 0.25, 0.5, 1].map((value) => {
    const tick = document.createElement('span');
    tick.className = 'scale-tick';
    tick.style.bottom = `${Math.sqrt(value) * 100}%`;
    tick.textContent = `${value}`;
    return tick;
  });
  const title = document.createElement('div');
  title.className = 'scale-title';
  title.textContent = 'weight / row max';
  el.replaceChildren(title, bar, ...ticks);
}

/**
 * q and k [1, 1, L, D] from sinusoidal positions (so that q_i·k_j falls off with |i - j|) plus
 * seeded noise; v random. The weights then show a band along the causal diagonal.
 */
function exampleInputs() {
  const random = seededRandom(42);
  const noise = () => random() - 0.5;
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

/**
 * How frames reach the page: a WebGPU canvas context (normal), or, where presenting a WebGPU
 * canvas loses the device (headless Chromium on SwiftShader does), an offscreen texture copied
 * back into a 2D canvas. Either way the picture is rendered by the same pipeline from weights.buffer.
 */
type Presentation = 'canvas' | 'readback';

interface Presenter {
  format: GPUTextureFormat;
  /** The view to render this frame into. */
  target(): GPUTextureView;
  /** After the render pass, in the same encoder; resolves once the frame is on the page. */
  present(encoder: GPUCommandEncoder): Promise<void>;
}

function canvasPresenter(canvas: HTMLCanvasElement, device: GPUDevice): Presenter {
  const context = canvas.getContext('webgpu');
  if (!context) throw new Error('heatmap: canvas.getContext("webgpu") returned null');
  const format = navigator.gpu.getPreferredCanvasFormat();
  context.configure({ device, format, alphaMode: 'opaque' });
  return {
    format,
    target: () => context.getCurrentTexture().createView(),
    async present(encoder) {
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
    },
  };
}

function readbackPresenter(canvas: HTMLCanvasElement, device: GPUDevice): Presenter {
  const context = canvas.getContext('2d');
  if (!context) throw new Error('heatmap: canvas.getContext("2d") returned null');
  const { width, height } = canvas;
  const bytesPerRow = Math.ceil((width * 4) / 256) * 256;
  const texture = device.createTexture({
    size: [width, height],
    format: 'rgba8unorm',
    usage: GPUTextureUsage.RENDER_ATTACHMENT | GPUTextureUsage.COPY_SRC,
    label: 'heatmap:frame',
  });
  const staging = device.createBuffer({
    size: bytesPerRow * height,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    label: 'heatmap:frame-readback',
  });
  return {
    format: 'rgba8unorm',
    target: () => texture.createView(),
    async present(encoder) {
      encoder.copyTextureToBuffer({ texture }, { buffer: staging, bytesPerRow }, [width, height]);
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const rows = new Uint8Array(staging.getMappedRange());
      const image = context.createImageData(width, height);
      for (let y = 0; y < height; y++) {
        image.data.set(rows.subarray(y * bytesPerRow, y * bytesPerRow + width * 4), y * width * 4);
      }
      staging.unmap();
      context.putImageData(image, 0, 0);
    },
  };
}

/**
 * Draws the example's weights into `canvas`; `status` shows the weight under the cursor. Falls
 * back to read-back presentation (on a fresh canvas element) when the WebGPU canvas fails.
 */
export async function showHeatmap(canvas: HTMLCanvasElement, status: HTMLElement): Promise<Presentation> {
  try {
    await start(canvas, status, 'canvas');
    return 'canvas';
  } catch {
    const fresh = canvas.cloneNode() as HTMLCanvasElement;
    canvas.replaceWith(fresh);
    await start(fresh, status, 'readback');
    return 'readback';
  }
}

async function start(canvas: HTMLCanvasElement, status: HTMLElement, presentation: Presentation) {
  const ctx: Context = await createContext({ label: 'heatmap' });
  try {
    await setUp(ctx, canvas, status, presentation);
  } catch (e) {
    ctx.destroy();
    throw e;
  }
}

async function setUp(
  ctx: Context,
  canvas: HTMLCanvasElement,
  status: HTMLElement,
  presentation: Presentation,
) {
  const { device } = ctx;
  const data = exampleInputs();
  const q = ctx.tensor(data.q, [1, 1, L, D], { label: 'heatmap:q' });
  const k = ctx.tensor(data.k, [1, 1, L, D], { label: 'heatmap:k' });
  const v = ctx.tensor(data.v, [1, 1, L, D], { label: 'heatmap:v' });
  const { output, weights } = await attention(q, k, v, { causal: true, returnWeights: true });
  output.destroy();
  // A host copy only for the cursor read-out; the picture is drawn from weights.buffer.
  const hostWeights = (await weights!.read()) as Float32Array;

  const presenter =
    presentation === 'canvas' ? canvasPresenter(canvas, device) : readbackPresenter(canvas, device);
  const module = device.createShaderModule({ code: heatmapSource, label: 'heatmap' });
  const pipeline = await device.createRenderPipelineAsync({
    label: 'heatmap',
    layout: 'auto',
    vertex: { module, entryPoint: 'vs' },
    fragment: { module, entryPoint: 'fs', targets: [{ format: presenter.format }] },
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

  // One frame in flight at a time; events during it ask for one more frame.
  let inFlight: Promise<void> | undefined;
  let again = false;
  const render = async () => {
    const u = new ArrayBuffer(80);
    new Float32Array(u, 0, 16).set(matrix());
    new Uint32Array(u, 64, 3).set([L, L, 0]);
    device.queue.writeBuffer(uniforms, 0, u);
    const encoder = device.createCommandEncoder({ label: 'heatmap' });
    const pass = encoder.beginRenderPass({
      label: 'heatmap',
      colorAttachments: [
        {
          view: presenter.target(),
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
    await presenter.present(encoder);
  };
  const requestFrame = () => {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = render().finally(() => {
      inFlight = undefined;
      if (again) {
        again = false;
        requestFrame();
      }
    });
  };
  // The first frame is awaited: a presentation that fails throws here, before any listener exists.
  await render();

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
      requestFrame();
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
      requestFrame();
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
    requestFrame();
  });

  status.textContent =
    `One head, L = ${L}, D = ${D}, causal: row i holds query i's softmax weights over keys j (query 0 and key 0 at the top left); ` +
    `keys after the query (j > i) are masked, weight 0. Colour = sqrt(weight / row max). ${presentation === 'canvas' ? 'WebGPU canvas' : 'Rendered offscreen, copied to a 2D canvas'}. ` +
    'Wheel: zoom, drag: pan, double-click: reset.';
}
