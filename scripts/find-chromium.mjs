// Pre-step of `npm test` and `npm run bench`: make sure a Chromium exists. Installs Debian's
// `chromium` (and the Vulkan loader Dawn needs) when none is found and apt-get runs as root.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { findChromium } from './chromium.mjs';

function canApt() {
  return process.getuid?.() === 0 && existsSync('/usr/bin/apt-get');
}

let path = findChromium();
const needVulkan =
  !existsSync('/usr/lib/x86_64-linux-gnu/libvulkan.so.1') && existsSync('/usr/lib/x86_64-linux-gnu');
if ((!path || needVulkan) && canApt()) {
  const packages = [...(path ? [] : ['chromium']), ...(needVulkan ? ['libvulkan1'] : [])];
  console.log(`find-chromium: installing ${packages.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', ...packages], { stdio: 'inherit', env });
  path = findChromium();
}
if (!path) {
  console.error(
    'find-chromium: no Chromium found. Install one (Debian/Ubuntu: sudo apt-get install chromium) ' +
      'or set CHROMIUM_PATH to a Chromium or Chrome binary.',
  );
  process.exit(1);
}
console.log(`find-chromium: using ${path}`);
