// Who am I in the job: rank, world size, local rank and rendezvous address from the environment
// that started this process.
//
// defines: DistSource, DistEnv, DistEnvDefaults, DistError, readDistEnv, expandNodelist,
//          parseTasksPerNode
//
// Sources, first match wins:
//   torchrun   RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK (what `neox launch` sets)
//   slurm      a task started by srun: SLURM_STEP_ID present (a bare sbatch/salloc shell has
//              SLURM_PROCID=0 and SLURM_NTASKS=N too, and must not wait for N-1 peers that never
//              come), SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID, SLURM_STEP_NUM_TASKS or
//              SLURM_NTASKS, SLURM_STEP_TASKS_PER_NODE or SLURM_TASKS_PER_NODE ("2(x3),1"),
//              SLURM_STEP_NODELIST or SLURM_NODELIST/SLURM_JOB_NODELIST ("gpu[01-03,07]")
//   openmpi    OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE, _NODE_RANK
//   mvapich    MV2_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK, _LOCAL_SIZE
//   pmi        PMI_RANK, PMI_SIZE (MPICH/Intel MPI hydra), MPI_LOCALRANKID, MPI_LOCALNRANKS
//   single     none of the above: rank 0 of 1
//
// MASTER_ADDR / MASTER_PORT come from the environment, else from the config (master_addr,
// master_port), else (Slurm) the first host of the step's node list, else 127.0.0.1 / 29500.

export type DistSource = 'torchrun' | 'slurm' | 'openmpi' | 'mvapich' | 'pmi' | 'single';

export interface DistEnv {
  source: DistSource;
  rank: number;
  worldSize: number;
  /** Rank within this node; selects the GPU. */
  localRank: number;
  localWorldSize: number;
  /** Index of this node, when the environment says (torchrun GROUP_RANK, SLURM_NODEID, OMPI node rank). */
  nodeRank: number | null;
  masterAddr: string;
  masterPort: number;
  /** Hosts of the job in order, when the environment lists them (Slurm). */
  hosts: string[] | null;
}

export interface DistEnvDefaults {
  /** The config's master_addr. */
  masterAddr?: string | null;
  /** The config's master_port. */
  masterPort?: number | null;
}

export class DistError extends Error {
  override name = 'NeoxError';
}

type Env = Record<string, string | undefined>;

const DEFAULT_ADDR = '127.0.0.1';
const DEFAULT_PORT = 29500;

/** Reads the process's place in a distributed job; `{ source: 'single', rank: 0, worldSize: 1 }` outside one. */
export function readDistEnv(env: Env = process.env, defaults: DistEnvDefaults = {}): DistEnv {
  const base = detect(env);
  if (base.rank >= base.worldSize) {
    throw new DistError(`${base.source} environment: rank ${base.rank} is not below the world size ${base.worldSize}`);
  }
  if (base.localRank >= base.localWorldSize) {
    throw new DistError(`${base.source} environment: local rank ${base.localRank} is not below the local world size ${base.localWorldSize}`);
  }
  const masterAddr = nonEmpty(env.MASTER_ADDR) ?? nonEmpty(defaults.masterAddr ?? undefined) ?? base.hosts?.[0] ?? DEFAULT_ADDR;
  const masterPort = env.MASTER_PORT !== undefined && env.MASTER_PORT !== ''
    ? intVar(env, 'MASTER_PORT', 1)
    : defaults.masterPort ?? DEFAULT_PORT;
  if (masterPort < 1 || masterPort > 65535) throw new DistError(`MASTER_PORT ${masterPort} is not a TCP port (1-65535)`);
  return { ...base, masterAddr, masterPort };
}

type Detected = Omit<DistEnv, 'masterAddr' | 'masterPort'>;

function detect(env: Env): Detected {
  if (env.RANK !== undefined && env.WORLD_SIZE !== undefined) {
    const worldSize = intVar(env, 'WORLD_SIZE', 1);
    const rank = intVar(env, 'RANK', 0);
    return {
      source: 'torchrun', rank, worldSize,
      localRank: env.LOCAL_RANK !== undefined ? intVar(env, 'LOCAL_RANK', 0) : rank,
      localWorldSize: env.LOCAL_WORLD_SIZE !== undefined ? intVar(env, 'LOCAL_WORLD_SIZE', 1) : worldSize,
      nodeRank: env.GROUP_RANK !== undefined ? intVar(env, 'GROUP_RANK', 0) : null,
      hosts: null,
    };
  }
  if (env.SLURM_PROCID !== undefined && (env.SLURM_STEP_ID !== undefined || env.SLURM_STEPID !== undefined)) {
    return slurm(env);
  }
  if (env.OMPI_COMM_WORLD_RANK !== undefined && env.OMPI_COMM_WORLD_SIZE !== undefined) {
    const rank = intVar(env, 'OMPI_COMM_WORLD_RANK', 0);
    const worldSize = intVar(env, 'OMPI_COMM_WORLD_SIZE', 1);
    return {
      source: 'openmpi', rank, worldSize,
      localRank: env.OMPI_COMM_WORLD_LOCAL_RANK !== undefined ? intVar(env, 'OMPI_COMM_WORLD_LOCAL_RANK', 0) : rank,
      localWorldSize: env.OMPI_COMM_WORLD_LOCAL_SIZE !== undefined ? intVar(env, 'OMPI_COMM_WORLD_LOCAL_SIZE', 1) : worldSize,
      nodeRank: env.OMPI_COMM_WORLD_NODE_RANK !== undefined ? intVar(env, 'OMPI_COMM_WORLD_NODE_RANK', 0) : null,
      hosts: null,
    };
  }
  if (env.MV2_COMM_WORLD_RANK !== undefined && env.MV2_COMM_WORLD_SIZE !== undefined) {
    const rank = intVar(env, 'MV2_COMM_WORLD_RANK', 0);
    const worldSize = intVar(env, 'MV2_COMM_WORLD_SIZE', 1);
    return {
      source: 'mvapich', rank, worldSize,
      localRank: env.MV2_COMM_WORLD_LOCAL_RANK !== undefined ? intVar(env, 'MV2_COMM_WORLD_LOCAL_RANK', 0) : rank,
      localWorldSize: env.MV2_COMM_WORLD_LOCAL_SIZE !== undefined ? intVar(env, 'MV2_COMM_WORLD_LOCAL_SIZE', 1) : worldSize,
      nodeRank: null, hosts: null,
    };
  }
  if (env.PMI_RANK !== undefined && env.PMI_SIZE !== undefined) {
    const rank = intVar(env, 'PMI_RANK', 0);
    const worldSize = intVar(env, 'PMI_SIZE', 1);
    return {
      source: 'pmi', rank, worldSize,
      localRank: env.MPI_LOCALRANKID !== undefined ? intVar(env, 'MPI_LOCALRANKID', 0) : rank,
      localWorldSize: env.MPI_LOCALNRANKS !== undefined ? intVar(env, 'MPI_LOCALNRANKS', 1) : worldSize,
      nodeRank: null, hosts: null,
    };
  }
  return { source: 'single', rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, nodeRank: null, hosts: null };
}

function slurm(env: Env): Detected {
  const rank = intVar(env, 'SLURM_PROCID', 0);
  const tasksVar = env.SLURM_STEP_NUM_TASKS !== undefined ? 'SLURM_STEP_NUM_TASKS' : 'SLURM_NTASKS';
  if (env[tasksVar] === undefined) throw new DistError('Slurm environment: SLURM_PROCID is set but neither SLURM_STEP_NUM_TASKS nor SLURM_NTASKS is');
  const worldSize = intVar(env, tasksVar, 1);
  const localRank = env.SLURM_LOCALID !== undefined ? intVar(env, 'SLURM_LOCALID', 0) : 0;
  const nodeRank = env.SLURM_NODEID !== undefined ? intVar(env, 'SLURM_NODEID', 0) : null;
  const perNodeText = env.SLURM_STEP_TASKS_PER_NODE ?? env.SLURM_TASKS_PER_NODE;
  let localWorldSize = worldSize;
  if (perNodeText) {
    const perNode = parseTasksPerNode(perNodeText);
    localWorldSize = perNode[nodeRank ?? 0] ?? perNode[0]!;
  }
  const list = env.SLURM_STEP_NODELIST ?? env.SLURM_NODELIST ?? env.SLURM_JOB_NODELIST;
  return { source: 'slurm', rank, worldSize, localRank, localWorldSize, nodeRank, hosts: list ? expandNodelist(list) : null };
}

/**
 * Slurm's compressed host list → host names: `gpu[01-03,07],cpu5` → gpu01 gpu02 gpu03 gpu07 cpu5.
 * Zero padding is kept (`[08-10]` → 08 09 10); several brackets in one name multiply
 * (`r[1-2]n[1-2]` → r1n1 r1n2 r2n1 r2n2).
 */
export function expandNodelist(list: string): string[] {
  const out: string[] = [];
  for (const item of splitTopLevel(list.trim())) {
    if (item === '') continue;
    out.push(...expandHost(item, list));
  }
  return out;
}

/** Splits on commas that are not inside brackets. */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '[') depth++;
    else if (c === ']') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
    if (depth < 0 || depth > 1) throw new DistError(`node list '${s}': unbalanced brackets`);
  }
  if (depth !== 0) throw new DistError(`node list '${s}': unbalanced brackets`);
  parts.push(s.slice(start));
  return parts.map((p) => p.trim());
}

function expandHost(item: string, whole: string): string[] {
  const open = item.indexOf('[');
  if (open < 0) return [item];
  const close = item.indexOf(']', open);
  const prefix = item.slice(0, open);
  const rest = expandHost(item.slice(close + 1), whole);
  const out: string[] = [];
  for (const range of item.slice(open + 1, close).split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(range.trim());
    if (!m) throw new DistError(`node list '${whole}': '${range}' is not a number or a range like 01-04`);
    const [lo, hi] = [m[1]!, m[2] ?? m[1]!];
    const width = lo.length;
    const [a, b] = [Number(lo), Number(hi)];
    if (b < a) throw new DistError(`node list '${whole}': range ${range} runs backwards`);
    if (b - a > 100_000) throw new DistError(`node list '${whole}': range ${range} is too large`);
    for (let n = a; n <= b; n++) {
      const id = String(n).padStart(width, '0');
      for (const r of rest) out.push(prefix + id + r);
    }
  }
  return out;
}

/** Slurm's tasks-per-node string → one count per node: `2(x3),1` → [2, 2, 2, 1]. */
export function parseTasksPerNode(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)(?:\(x(\d+)\))?\s*$/.exec(part);
    if (!m) throw new DistError(`tasks per node '${text}': cannot read '${part}' (expected N or N(xM))`);
    const repeat = m[2] ? Number(m[2]) : 1;
    for (let i = 0; i < repeat; i++) out.push(Number(m[1]));
  }
  return out;
}

function intVar(env: Env, name: string, min: number): number {
  const text = env[name];
  const n = text === undefined ? NaN : Number(text.trim());
  if (!Number.isInteger(n) || text!.trim() === '') throw new DistError(`${name}='${text}' is not an integer`);
  if (n < min) throw new DistError(`${name}=${n} must be at least ${min}`);
  return n;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s.trim() === '' ? undefined : s.trim();
}
