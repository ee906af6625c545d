// one-off: run the training page headless and print its status until done
import { createServer } from 'vite';
import { chromium } from 'playwright';
import { chromiumArgs, findChromium } from './scripts/chromium.mjs';
const server = await createServer({ root: 'examples/train', server: { port: 5199, host: '127.0.0.1' }, logLevel: 'error' });
await server.listen();
const browser = await chromium.launch({ executablePath: findChromium(), args: chromiumArgs() });
const page = await browser.newPage();
page.on('pageerror', (e) => console.log('pageerror', e.message));
await page.goto('http://127.0.0.1:5199/');
let last = '';
for (let t = 0; t < 600; t++) {
  const s = await page.textContent('#status');
  if (s !== last) { console.log(s); last = s; }
  if (s.includes('done')) break;
  await new Promise((r) => setTimeout(r, 1000));
}
await browser.close();
await server.close();
