// Naming and provenance of the benchmark's results files, shared by bench/run.mjs (the page) and
// bench/node_cli.mjs (Node).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The adapter's vendor and architecture as a file-name word, e.g. google-swiftshader. */
export function adapterSlug(adapter) {
  return (
    [adapter.vendor, adapter.architecture]
      .filter(Boolean)
      .join('-')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '') || 'unknown'
  );
}

/**
 * The commit the sources were at, with '+changes' when `paths` differ from it; BENCH_SOURCES
 * where it is set (a packed run on a machine without the repository), else 'unknown' without git.
 */
export function sourceVersion(paths) {
  if (process.env.BENCH_SOURCES) return process.env.BENCH_SOURCES;
  try {
    const git = (...a) =>
      execFileSync('git', a, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = git('status', '--porcelain', '--', ...paths) !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? '+changes' : ''}`;
  } catch {
    return 'unknown';
  }
}
