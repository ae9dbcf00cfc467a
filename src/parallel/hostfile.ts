// Hostfiles and resource filters, as DeepSpeed's runner reads them (GPT-NeoX's deepy.py passes
// its hostfile/include/exclude/num_nodes/num_gpus keys straight through to it).
//
// defines: ResourcePool, ActiveResources, ResourceFilter, LaunchError, parseHostfile,
//          findHostfile, filterResources, DEFAULT_HOSTFILE
//
//   hostfile   one `hostname slots=N` per line; `#` comments and blank lines ignored; a host
//              listed twice or a line without slots= is an error naming the line
//   include    NODE_SPEC[@NODE_SPEC...], NODE_SPEC = host[:slot[,slot...]]: only these hosts
//              (all their slots, or the listed ones): "worker-0@worker-1:0,2"
//   exclude    same syntax: drop whole hosts or the listed slots
//   num_nodes  the first N hosts (after include/exclude); -1 or unset: all
//   num_gpus   slots 0 … N-1 on every host; unset: all
// include and exclude exclude each other, and neither combines with num_nodes/num_gpus (as
// DeepSpeed). Host order is the hostfile's, and it decides node ranks.

import { existsSync, readFileSync } from 'node:fs';

/** host → slot count, in hostfile order. */
export type ResourcePool = Map<string, number>;
/** host → slot ids (GPU ordinals) to use, in hostfile order. */
export type ActiveResources = Map<string, number[]>;

export interface ResourceFilter {
  include?: string | null;
  exclude?: string | null;
  numNodes?: number | null;
  numGpus?: number | null;
}

export class LaunchError extends Error {
  override name = 'NeoxError';
}

/** DeepSpeed's (and GPT-NeoX's) default hostfile location. */
export const DEFAULT_HOSTFILE = '/job/hostfile';

export function parseHostfile(text: string, source = 'hostfile'): ResourcePool {
  const pool: ResourcePool = new Map();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const m = /^(\S+)\s+slots\s*=\s*(\d+)\s*$/.exec(line);
    if (!m) throw new LaunchError(`${source} line ${i + 1}: expected 'hostname slots=N', got '${raw.trim()}'`);
    const [, host, slots] = m;
    if (pool.has(host!)) throw new LaunchError(`${source} line ${i + 1}: host ${host} is listed twice`);
    if (Number(slots) < 1) throw new LaunchError(`${source} line ${i + 1}: ${host} has slots=${slots}; need at least 1`);
    pool.set(host!, Number(slots));
  });
  if (pool.size === 0) throw new LaunchError(`${source} lists no hosts`);
  return pool;
}

/**
 * The hostfile to use: the explicit one (flag or config `hostfile`, which must exist), else
 * $DLTS_HOSTFILE, else /job/hostfile, when they exist; null for none (a single-node run).
 */
export function findHostfile(explicit: string | null | undefined, env: Record<string, string | undefined> = process.env): string | null {
  if (explicit) {
    if (!existsSync(explicit)) throw new LaunchError(`hostfile ${explicit} not found`);
    return explicit;
  }
  for (const p of [env.DLTS_HOSTFILE, DEFAULT_HOSTFILE]) if (p && existsSync(p)) return p;
  return null;
}

export function readHostfile(path: string): ResourcePool {
  return parseHostfile(readFileSync(path, 'utf8'), path);
}

/** Applies include/exclude/num_nodes/num_gpus to a pool; fails on names or slots the pool lacks. */
export function filterResources(pool: ResourcePool, f: ResourceFilter = {}): ActiveResources {
  const include = f.include?.trim() || '';
  const exclude = f.exclude?.trim() || '';
  const numNodes = f.numNodes ?? -1;
  const numGpus = f.numGpus ?? -1;
  if (include && exclude) throw new LaunchError('include and exclude cannot both be set');
  if ((include || exclude) && (numNodes > 0 || numGpus > 0)) {
    throw new LaunchError('num_nodes/num_gpus cannot be combined with include/exclude');
  }
  let active: ActiveResources = new Map([...pool].map(([h, n]) => [h, Array.from({ length: n }, (_, i) => i)]));

  const spec = include || exclude;
  if (spec) {
    const what = include ? 'include' : 'exclude';
    const chosen = new Map<string, number[] | 'all'>();
    for (const node of spec.split('@')) {
      const [host, slotText, extra] = node.split(':');
      if (!host || extra !== undefined) throw new LaunchError(`${what} '${spec}': cannot read '${node}' (expected host or host:0,1)`);
      const slots = active.get(host);
      if (!slots) throw new LaunchError(`${what} '${spec}': host '${host}' is not in the hostfile (hosts: ${[...pool.keys()].join(', ')})`);
      if (slotText === undefined) {
        chosen.set(host, 'all');
        continue;
      }
      const ids = slotText.split(',').map((s) => {
        if (!/^\d+$/.test(s.trim())) throw new LaunchError(`${what} '${spec}': slot '${s}' of ${host} is not a number`);
        const id = Number(s);
        if (!slots.includes(id)) throw new LaunchError(`${what} '${spec}': ${host} has no slot ${id} (slots 0-${slots.length - 1})`);
        return id;
      });
      const prev = chosen.get(host);
      if (prev !== 'all') chosen.set(host, [...new Set([...(prev ?? []), ...ids])]);
    }
    const next: ActiveResources = new Map();
    for (const [host, slots] of active) {
      const c = chosen.get(host);
      const keep = include
        ? (c === undefined ? [] : c === 'all' ? slots : slots.filter((s) => c.includes(s)))
        : (c === undefined ? slots : c === 'all' ? [] : slots.filter((s) => !c.includes(s)));
      if (keep.length) next.set(host, keep);
    }
    active = next;
  }
  if (numNodes > 0) {
    if (numNodes > active.size) throw new LaunchError(`num_nodes ${numNodes} but the hostfile has ${active.size} host(s)`);
    active = new Map([...active].slice(0, numNodes));
  }
  if (numGpus > 0) {
    for (const [host, slots] of active) {
      if (numGpus > slots.length) throw new LaunchError(`num_gpus ${numGpus} but ${host} has ${slots.length} slot(s)`);
      active.set(host, slots.slice(0, numGpus));
    }
  }
  if (active.size === 0) throw new LaunchError('no hosts left after include/exclude');
  return active;
}
