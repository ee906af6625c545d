// The demo page: trains the digit-reversal transformer on the GPU, drawing the loss curve and every
// head's attention map on one held-out sequence at each evaluation (the anti-diagonal of the
// reversal appears as it learns). Run from a checkout: npx vite examples/train (over
// http://127.0.0.1: navigator.gpu exists only on a secure origin).
import { createContext, type ReverseDigitsProgress, trainReverseDigits } from '../../src';

const status = document.getElementById('status')!;
const lossCanvas = document.getElementById('loss') as HTMLCanvasElement;
const maps = document.getElementById('maps')!;
const points: ReverseDigitsProgress[] = [];

function drawLoss() {
  const g = lossCanvas.getContext('2d')!;
  const { width, height } = lossCanvas;
  g.clearRect(0, 0, width, height);
  const maxLoss = Math.max(...points.map((p) => p.loss), 1e-6);
  const maxStep = Math.max(...points.map((p) => p.step), 1);
  g.beginPath();
  points.forEach((p, i) => {
    const x = (p.step / maxStep) * (width - 10) + 5;
    const y = height - 5 - (p.loss / maxLoss) * (height - 10);
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  });
  g.strokeStyle = '#c33';
  g.stroke();
  g.fillText(`loss (max ${maxLoss.toFixed(3)})`, 8, 12);
}

function drawMaps(p: ReverseDigitsProgress, heads: number) {
  if (!p.attention || !p.sequence) return;
  const L = p.sequence.length;
  const tokens = Array.from(p.sequence, (t) => (t === 10 ? '|' : String(t))).join(' ');
  const cell = 20;
  maps.replaceChildren();
  p.attention.forEach((w, layer) => {
    for (let h = 0; h < heads; h++) {
      const figure = document.createElement('figure');
      const canvas = document.createElement('canvas');
      canvas.width = canvas.height = L * cell;
      const g = canvas.getContext('2d')!;
      for (let i = 0; i < L; i++) {
        for (let j = 0; j < L; j++) {
          const shade = Math.round(255 * (1 - w[(h * L + i) * L + j]));
          g.fillStyle = `rgb(${shade}, ${shade}, 255)`;
          g.fillRect(j * cell, i * cell, cell, cell);
        }
      }
      const caption = document.createElement('figcaption');
      caption.textContent = `layer ${layer} head ${h} (rows: queries, columns: keys ${tokens})`;
      figure.append(canvas, caption);
      maps.append(figure);
    }
  });
}

const ctx = await createContext();
const heads = 2;
const result = await trainReverseDigits(ctx, {
  model: { heads },
  evalEvery: 10,
  watchAttention: true,
  onProgress: (p) => {
    points.push(p);
    status.textContent = `step ${p.step}: loss ${p.loss.toFixed(4)}, held-out token accuracy ${(100 * p.accuracy).toFixed(1)}%, ${p.seconds.toFixed(1)} s (${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture})`;
    drawLoss();
    drawMaps(p, heads);
  },
});
status.textContent += ' — done';
for (const t of Object.values(result.params)) t.destroy();
