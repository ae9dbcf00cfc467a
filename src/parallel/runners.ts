// Multi-node command lines: per-node pdsh commands that start `neox launch` on every host, and
// the srun / mpirun lines for Slurm and Open MPI. Pure functions of the resources and options,
// so they are tested on any machine; launcher.ts prints or runs them.
//
// defines: RunnerOptions, NodeCommand, neoxArgv, pdshCommands, srunCommand, mpirunCommand,
//          collectExports, shellQuote, shellJoin, PDSH_FAN_OUT, EXPORT_PREFIXES, DEFAULT_EXPORTS
//
// pdsh (as DeepSpeed's PDSHRunner, one pdsh per node so every node gets its own node rank, rank
// offset and GPU list):  pdsh -S -f 1024 -w HOST 'export K=V; …; cd CWD; NODE NEOX launch
//   --nproc-per-node n --nnodes M --node-rank i --rank-offset o --world-size W --master-addr A
//   --master-port P --devices 0,1 -- train FILES'
// srun:    srun --nodes=M --ntasks-per-node=G --ntasks=W [--nodelist=h1,h2] --kill-on-bad-exit=1
//          [env MASTER_ADDR=A MASTER_PORT=P CUDA_VISIBLE_DEVICES=…] NODE NEOX train FILES
//          (each task reads SLURM_PROCID etc., env.ts)
// mpirun:  mpirun -np W -H h1:G,h2:G --map-by slot --bind-to none -x MASTER_ADDR=A -x MASTER_PORT=P
//          -x K … NODE NEOX train FILES   (each rank reads OMPI_COMM_WORLD_*; --bind-to none lets
//          a rank's worker threads use more than one core)

import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { type ActiveResources, LaunchError } from './hostfile.js';

/** pdsh's fan-out (-f): at most this many concurrent remote commands, as DeepSpeed. */
export const PDSH_FAN_OUT = 1024;

/** Environment variables forwarded to remote nodes: names starting with these. */
export const EXPORT_PREFIXES = ['NCCL_', 'NEOX_', 'UCX_', 'CUDA_HOME', 'CUDA_PATH', 'NODE_OPTIONS', 'NVSHMEM_', 'TORCH_SYMM_MEM_'];

/** Set in every rank unless already set: NVLink multicast off (see shared/NCCL.md). */
export const DEFAULT_EXPORTS: Record<string, string> = {
  NCCL_NVLS_ENABLE: '0', TORCH_SYMM_MEM_DISABLE_MULTICAST: '1', NVSHMEM_DISABLE_NVLS: '1',
};

export interface RunnerOptions {
  /** The neox subcommand and its arguments (`train cfg.yml`), or with `exec` a whole program. */
  command: string[];
  exec?: boolean;
  masterAddr: string;
  masterPort: number;
  /** Working directory on every node (the same path; a shared filesystem is assumed). */
  cwd: string;
  /** Absolute paths of node and bin/neox.js (the same on every node). */
  nodePath: string;
  neoxBin: string;
  /** Variables to set on remote ranks. */
  exports?: Record<string, string>;
}

export interface NodeCommand {
  host: string;
  nodeRank: number;
  argv: string[];
}

/** The argv that runs `command` on a node: node bin/neox.js …, or the program itself with exec. */
export function neoxArgv(o: Pick<RunnerOptions, 'command' | 'exec' | 'nodePath' | 'neoxBin'>, neoxArgs: string[] = o.command): string[] {
  return o.exec ? [...o.command] : [o.nodePath, o.neoxBin, ...neoxArgs];
}

/** One `pdsh -w host` command per node, each starting `neox launch` there for its slots. */
export function pdshCommands(active: ActiveResources, o: RunnerOptions): NodeCommand[] {
  const hosts = [...active];
  const worldSize = hosts.reduce((n, [, s]) => n + s.length, 0);
  const exports = Object.entries(o.exports ?? {}).map(([k, v]) => `export ${k}=${shellQuote(v)};`);
  let offset = 0;
  return hosts.map(([host, slots], nodeRank) => {
    const launch = [
      o.nodePath, o.neoxBin, 'launch',
      '--nproc-per-node', String(slots.length), '--nnodes', String(hosts.length), '--node-rank', String(nodeRank),
      '--rank-offset', String(offset), '--world-size', String(worldSize),
      '--master-addr', o.masterAddr, '--master-port', String(o.masterPort), '--devices', slots.join(','),
      ...(o.exec ? ['--exec'] : []), '--', ...o.command,
    ];
    offset += slots.length;
    const remote = [...exports, `cd ${shellQuote(o.cwd)};`, shellJoin(launch)].join(' ');
    return { host, nodeRank, argv: ['pdsh', '-S', '-f', String(PDSH_FAN_OUT), '-w', host, remote] };
  });
}

/** GPUs per node when every node uses the same number; the slot list when all nodes share one. */
function uniformSlots(active: ActiveResources, launcher: string): { perNode: number; devices: string | null } {
  const lists = [...active.values()];
  const perNode = lists[0]!.length;
  if (lists.some((l) => l.length !== perNode)) {
    throw new LaunchError(`${launcher} starts the same number of ranks on every node, but the hosts have ` +
      `${[...active].map(([h, s]) => `${h}: ${s.length}`).join(', ')}; use num_gpus, or launcher: pdsh`);
  }
  const first = lists[0]!.join(',');
  const isPrefix = lists[0]!.every((s, i) => s === i);
  if (lists.every((l) => l.join(',') === first)) return { perNode, devices: isPrefix ? null : first };
  if (lists.every((l) => l.every((s, i) => s === i))) return { perNode, devices: null };
  throw new LaunchError(`${launcher} cannot give nodes different GPU lists (${[...active].map(([h, s]) => `${h}: ${s.join(',')}`).join('; ')}); use launcher: pdsh`);
}

/**
 * The srun line. With a hostfile, its (filtered) hosts become --nodelist; without one, numNodes
 * and gpusPerNode say how many tasks to start in the current allocation.
 */
export function srunCommand(active: ActiveResources | null, o: RunnerOptions & { numNodes?: number | null; gpusPerNode?: number | null }): string[] {
  let nodes: number;
  let perNode: number;
  let devices: string | null = null;
  const args: string[] = [];
  if (active) {
    ({ perNode, devices } = uniformSlots(active, 'srun'));
    nodes = active.size;
  } else {
    if (!o.numNodes || o.numNodes < 1 || !o.gpusPerNode) {
      throw new LaunchError('launcher: slurm without a hostfile needs num_nodes and num_gpus (or --num-nodes/--num-gpus)');
    }
    nodes = o.numNodes;
    perNode = o.gpusPerNode;
  }
  args.push('srun', `--nodes=${nodes}`, `--ntasks-per-node=${perNode}`, `--ntasks=${nodes * perNode}`);
  if (active) args.push(`--nodelist=${[...active.keys()].join(',')}`);
  args.push('--kill-on-bad-exit=1');
  const env = [...(active ? [`MASTER_ADDR=${o.masterAddr}`] : []), `MASTER_PORT=${o.masterPort}`, ...(devices ? [`CUDA_VISIBLE_DEVICES=${devices}`] : [])];
  return [...args, 'env', ...env, ...neoxArgv(o)];
}

/** The Open MPI mpirun line over the (filtered) hostfile hosts. */
export function mpirunCommand(active: ActiveResources, o: RunnerOptions): string[] {
  const { devices } = uniformSlotsOrPrefix(active);
  const total = [...active.values()].reduce((n, s) => n + s.length, 0);
  const args = ['mpirun', '-np', String(total), '-H', [...active].map(([h, s]) => `${h}:${s.length}`).join(','),
    '--map-by', 'slot', '--bind-to', 'none',
    '-x', `MASTER_ADDR=${o.masterAddr}`, '-x', `MASTER_PORT=${o.masterPort}`];
  if (devices) args.push('-x', `CUDA_VISIBLE_DEVICES=${devices}`);
  for (const [k, v] of Object.entries(o.exports ?? {})) args.push('-x', `${k}=${v}`);
  return [...args, ...neoxArgv(o)];
}

/** mpirun allows different rank counts per host as long as each host uses GPUs 0 … n-1, or all share one list. */
function uniformSlotsOrPrefix(active: ActiveResources): { devices: string | null } {
  const lists = [...active.values()];
  if (lists.every((l) => l.every((s, i) => s === i))) return { devices: null };
  return { devices: uniformSlots(active, 'mpirun').devices };
}

/**
 * Variables to forward to remote ranks: those of this environment whose names start with
 * EXPORT_PREFIXES, then KEY=VALUE lines of ~/.neox_env and ./.neox_env (as DeepSpeed's
 * .deepspeed_env), then DEFAULT_EXPORTS where still unset.
 */
export function collectExports(env: Record<string, string | undefined> = process.env, files = [join(homedir(), '.neox_env'), '.neox_env']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && EXPORT_PREFIXES.some((p) => k.startsWith(p))) out[k] = v;
  }
  for (const f of files) {
    if (!existsSync(f)) continue;
    readFileSync(f, 'utf8').split(/\r?\n/).forEach((line, i) => {
      const t = line.trim();
      if (t === '' || t.startsWith('#')) return;
      const eq = t.indexOf('=');
      if (eq <= 0) throw new LaunchError(`${f} line ${i + 1}: expected KEY=VALUE, got '${t}'`);
      out[t.slice(0, eq).trim()] = t.slice(eq + 1).trim();
    });
  }
  for (const [k, v] of Object.entries(DEFAULT_EXPORTS)) out[k] ??= v;
  return out;
}

/** Quotes for a POSIX shell when needed: abc stays, `a b` → 'a b', `it's` → 'it'\''s'. */
export function shellQuote(s: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}
