// `neox launch`: start the processes of a job and watch them.
//
// defines: Worker, WorkerFailure, SupervisorOptions, SupervisorResult, supervise, LocalLaunch,
//          localWorkers, LaunchArgs, parseLaunchArgs, runLaunch, NEOX_BIN, LAUNCH_USAGE
//
// Local (like torchrun):  neox launch --nproc-per-node N [--nnodes M --node-rank i --master-addr A
//   --master-port P] train FILES...  spawns N `neox train FILES...` processes with RANK,
//   LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT (and
//   CUDA_VISIBLE_DEVICES with --devices). For M nodes, run it on each node with its node rank.
// Multi-node from one command (GPT-NeoX's deepy.py): without --nproc-per-node the config's
//   `launcher` decides: pdsh (default) reads the hostfile (hostfile key, --hostfile,
//   $DLTS_HOSTFILE, /job/hostfile), applies include/exclude/num_nodes/num_gpus and runs one pdsh
//   per node, each starting `neox launch` there; slurm and openmpi print the srun / mpirun line
//   (run it with --run). No hostfile: one node, num_gpus processes.
// Supervision: children's output is passed through, each line prefixed `[rank r]`, and the last
//   lines of each one's stderr kept. When a child fails (non-zero exit or a signal), the others get
//   SIGTERM, then SIGKILL after --kill-timeout seconds, and the launcher exits with the failed
//   child's code (128 + signal number for a signal), saying which rank failed, how, and its last
//   stderr lines. SIGINT/SIGTERM sent to the launcher are forwarded to the children; a second
//   one kills them.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { constants as osConstants, hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { assertTrainable, loadConfig } from '../config/index.js';
import { type ActiveResources, LaunchError, filterResources, findHostfile, readHostfile } from './hostfile.js';
import {
  DEFAULT_EXPORTS, type RunnerOptions, collectExports, mpirunCommand, neoxArgv, pdshCommands, shellJoin, srunCommand,
} from './runners.js';

/** bin/neox.js of this installation (from dist/src/parallel/ up to the package root). */
export const NEOX_BIN = fileURLToPath(new URL('../../../bin/neox.js', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Supervisor: run workers, fail fast

export interface Worker {
  /** "rank 3", "node worker-1". */
  label: string;
  /** Short tag for output lines: "[rank 3] ". Empty: no prefix. */
  prefix: string;
  argv: string[];
  env: Record<string, string | undefined>;
}

export interface WorkerFailure {
  worker: Worker;
  index: number;
  pid: number | undefined;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderrTail: string[];
  seconds: number;
}

export interface SupervisorOptions {
  /** Seconds between SIGTERM and SIGKILL when stopping workers (default 5). */
  killTimeout?: number;
  /** Where children's output lines go (default this process's stdout/stderr). */
  out?: (line: string) => void;
  err?: (line: string) => void;
  /** Lines of stderr kept per worker for the failure report (default 20). */
  tailLines?: number;
  /** Forward SIGINT/SIGTERM of this process to the workers (default true). */
  forwardSignals?: boolean;
  cwd?: string;
}

export interface SupervisorResult {
  /** The exit code for the launcher: 0, the failed worker's code, or 128 + signal number. */
  code: number;
  failure: WorkerFailure | null;
  /** A signal this process received and forwarded. */
  interrupted: NodeJS.Signals | null;
  /** The failure report (empty on success). */
  message: string;
}

/** Runs the workers to completion; the first one that fails stops the rest. */
export function supervise(workers: Worker[], opts: SupervisorOptions = {}): Promise<SupervisorResult> {
  const out = opts.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const err = opts.err ?? ((l: string) => process.stderr.write(l + '\n'));
  const tailLines = opts.tailLines ?? 20;
  const killMs = (opts.killTimeout ?? 5) * 1000;
  const start = Date.now();
  const children: (ChildProcess | null)[] = [];
  const tails: string[][] = workers.map(() => []);
  let running = 0;
  let failure: WorkerFailure | null = null;
  let interrupted: NodeJS.Signals | null = null;
  let stopping = false;
  let killTimer: NodeJS.Timeout | null = null;

  return new Promise((resolve) => {
    const stopAll = (signal: NodeJS.Signals) => {
      for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill(signal);
      if (!killTimer) {
        killTimer = setTimeout(() => {
          for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        }, killMs);
        killTimer.unref();
      }
    };
    const onSignal = (signal: NodeJS.Signals) => {
      if (interrupted) {
        for (const c of children) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        return;
      }
      interrupted = signal;
      stopping = true;
      stopAll(signal);
    };
    const forward = opts.forwardSignals ?? true;
    if (forward) {
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
    }
    const finish = () => {
      if (forward) {
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
      }
      if (killTimer) clearTimeout(killTimer);
      let code = 0;
      let message = '';
      if (failure) {
        code = failure.code ?? 128 + (osConstants.signals[failure.signal!] ?? 1);
        message = failureMessage(failure, workers.length);
      } else if (interrupted) {
        code = 128 + (osConstants.signals[interrupted] ?? 2);
        message = `neox launch: stopped by ${interrupted}`;
      }
      resolve({ code, failure, interrupted, message });
    };

    workers.forEach((w, i) => {
      const [cmd, ...args] = w.argv;
      const child = spawn(cmd!, args, { env: w.env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd });
      children.push(child);
      running++;
      pipeLines(child.stdout!, (l) => out(w.prefix + l));
      pipeLines(child.stderr!, (l) => {
        err(w.prefix + l);
        tails[i]!.push(l);
        if (tails[i]!.length > tailLines) tails[i]!.shift();
      });
      let spawnError: Error | null = null;
      child.on('error', (e) => {
        spawnError = e;
        tails[i]!.push(`could not start ${cmd}: ${e.message}`);
      });
      child.on('close', (code, signal) => {
        running--;
        const failed = spawnError !== null || code !== 0;
        if (failed && !stopping) {
          failure = { worker: w, index: i, pid: child.pid, code: spawnError ? 127 : code, signal, stderrTail: [...tails[i]!], seconds: (Date.now() - start) / 1000 };
          stopping = true;
          stopAll('SIGTERM');
        }
        if (running === 0) finish();
      });
    });
    if (workers.length === 0) finish();
  });
}

function failureMessage(f: WorkerFailure, total: number): string {
  const how = f.signal ? `was killed by ${f.signal}` : `exited with code ${f.code}`;
  const others = total - 1;
  const lines = [`neox launch: ${f.worker.label}${f.pid ? ` (pid ${f.pid})` : ''} failed: it ${how} after ${f.seconds.toFixed(1)} s` +
    (others ? `; stopped the other ${others} ${others === 1 ? 'process' : 'processes'}` : '')];
  if (f.stderrTail.length) {
    lines.push(`last lines of ${f.worker.label}'s stderr:`);
    for (const l of f.stderrTail) lines.push(`  ${l}`);
  } else {
    lines.push(`${f.worker.label} wrote nothing to stderr`);
  }
  return lines.join('\n');
}

function pipeLines(stream: NodeJS.ReadableStream, onLine: (l: string) => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i).replace(/\r$/, ''));
      buf = buf.slice(i + 1);
    }
  });
  stream.on('end', () => {
    if (buf) onLine(buf);
  });
}

// ---------------------------------------------------------------------------------------------
// Local launch (one node)

export interface LocalLaunch {
  nprocPerNode: number;
  nnodes?: number;
  nodeRank?: number;
  /** First global rank on this node (default nodeRank × nprocPerNode). */
  rankOffset?: number;
  /** Total ranks (default nnodes × nprocPerNode). */
  worldSize?: number;
  masterAddr: string;
  masterPort: number;
  /** GPU ordinals of this node to use (CUDA_VISIBLE_DEVICES), local rank i uses the i-th. */
  devices?: number[] | null;
  /** The argv each rank runs (without rank-specific parts). */
  argv: string[];
  /** Base environment (default process.env). */
  env?: Record<string, string | undefined>;
  /** Prefix output lines with the rank (default: when more than one process). */
  prefix?: boolean;
}

/** The workers of one node, with the torchrun variables set. */
export function localWorkers(l: LocalLaunch): Worker[] {
  const nnodes = l.nnodes ?? 1;
  const nodeRank = l.nodeRank ?? 0;
  const offset = l.rankOffset ?? nodeRank * l.nprocPerNode;
  const worldSize = l.worldSize ?? nnodes * l.nprocPerNode;
  if (!Number.isInteger(l.nprocPerNode) || l.nprocPerNode < 1) throw new LaunchError(`--nproc-per-node must be a positive integer, got ${l.nprocPerNode}`);
  if (nodeRank < 0 || nodeRank >= nnodes) throw new LaunchError(`--node-rank ${nodeRank} is not in [0, ${nnodes})`);
  if (offset + l.nprocPerNode > worldSize) throw new LaunchError(`ranks ${offset}…${offset + l.nprocPerNode - 1} do not fit a world of ${worldSize}`);
  if (l.devices && l.devices.length < l.nprocPerNode) {
    throw new LaunchError(`--devices lists ${l.devices.length} GPU(s) for ${l.nprocPerNode} processes`);
  }
  const base = l.env ?? process.env;
  const prefix = l.prefix ?? worldSize > 1;
  const width = String(worldSize - 1).length;
  return Array.from({ length: l.nprocPerNode }, (_, local) => {
    const rank = offset + local;
    const env: Record<string, string | undefined> = {
      ...base,
      RANK: String(rank), LOCAL_RANK: String(local), WORLD_SIZE: String(worldSize),
      LOCAL_WORLD_SIZE: String(l.nprocPerNode), GROUP_RANK: String(nodeRank), ROLE_RANK: String(rank),
      MASTER_ADDR: l.masterAddr, MASTER_PORT: String(l.masterPort), NEOX_LAUNCHER_PID: String(process.pid),
    };
    if (l.devices) env.CUDA_VISIBLE_DEVICES = l.devices.join(',');
    for (const [k, v] of Object.entries(DEFAULT_EXPORTS)) env[k] ??= v;
    return { label: `rank ${rank}`, prefix: prefix ? `[rank ${String(rank).padStart(width)}] ` : '', argv: l.argv, env };
  });
}

// ---------------------------------------------------------------------------------------------
// The command line

export const LAUNCH_USAGE = `usage: neox launch [options] COMMAND ARGS...      (COMMAND: a neox command, e.g. train FILES...)

Local processes (torchrun-style; for several nodes run it on each with its --node-rank):
  --nproc-per-node N      processes on this node (one per GPU)
  --nnodes M              nodes in the job (default 1)
  --node-rank I           this node's index (default 0)
  --master-addr HOST      rendezvous host, where rank 0 runs (default: config master_addr, else 127.0.0.1)
  --master-port PORT      rendezvous port (default: config master_port, 29500)
  --devices 0,1,...       GPU ordinals for this node's ranks (sets CUDA_VISIBLE_DEVICES)

Multi-node from one command (without --nproc-per-node; config keys in parentheses):
  --launcher NAME         pdsh | slurm | openmpi (launcher; default pdsh)
  --hostfile FILE         'host slots=N' lines (hostfile; else $DLTS_HOSTFILE, /job/hostfile)
  --include SPEC          hosts/GPUs to use, e.g. worker-0@worker-1:0,2 (include)
  --exclude SPEC          hosts/GPUs to leave out, same syntax (exclude)
  --num-nodes N           first N hosts (num_nodes)        --num-gpus G   GPUs 0..G-1 per host (num_gpus)
  --run                   run the srun/mpirun line instead of printing it
  --dry-run               print the pdsh or local commands instead of running them

Other:
  --exec                  COMMAND is a program to run, not a neox command
  --kill-timeout S        seconds between SIGTERM and SIGKILL when stopping ranks (default 5)
  --no-prefix             don't prefix output lines with [rank r]
  --rank-offset R, --world-size W   (set by the pdsh launcher: nodes with different GPU counts)`;

export interface LaunchArgs {
  nprocPerNode: number | null;
  nnodes: number;
  nodeRank: number;
  masterAddr: string | null;
  masterPort: number | null;
  devices: number[] | null;
  rankOffset: number | null;
  worldSize: number | null;
  launcher: string | null;
  hostfile: string | null;
  include: string | null;
  exclude: string | null;
  numNodes: number | null;
  numGpus: number | null;
  run: boolean;
  dryRun: boolean;
  exec: boolean;
  killTimeout: number;
  prefix: boolean;
  help: boolean;
  /** COMMAND ARGS... */
  command: string[];
}

const VALUE_OPTS = new Set(['nproc-per-node', 'nnodes', 'node-rank', 'master-addr', 'master-port', 'devices', 'rank-offset',
  'world-size', 'launcher', 'hostfile', 'include', 'exclude', 'num-nodes', 'num-gpus', 'kill-timeout']);
const FLAG_OPTS = new Set(['run', 'dry-run', 'exec', 'no-prefix', 'help']);

/** Options up to the first non-option (or `--`); the rest is the command, passed through untouched. */
export function parseLaunchArgs(argv: string[]): LaunchArgs {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (a === '-h') {
      flags.add('help');
      continue;
    }
    if (!a.startsWith('--')) break;
    const eq = a.indexOf('=');
    const name = (eq > 0 ? a.slice(2, eq) : a.slice(2)).replace(/_/g, '-');
    if (FLAG_OPTS.has(name)) {
      if (eq > 0) throw new LaunchError(`--${name} takes no value`);
      flags.add(name);
    } else if (VALUE_OPTS.has(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new LaunchError(`--${name} needs a value`);
      values.set(name, v);
    } else {
      throw new LaunchError(`unknown option ${a} for neox launch (the command's own options go after the command)\n\n${LAUNCH_USAGE}`);
    }
  }
  const int = (name: string, min: number): number | null => {
    const v = values.get(name);
    if (v === undefined) return null;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new LaunchError(`--${name} must be an integer ≥ ${min}, got '${v}'`);
    return n;
  };
  const devicesText = values.get('devices');
  const devices = devicesText === undefined ? null : devicesText.split(',').map((s) => {
    if (!/^\d+$/.test(s.trim())) throw new LaunchError(`--devices: '${s}' is not a GPU ordinal`);
    return Number(s);
  });
  const killTimeout = values.has('kill-timeout') ? Number(values.get('kill-timeout')) : 5;
  if (!(killTimeout >= 0)) throw new LaunchError(`--kill-timeout must be a number of seconds, got '${values.get('kill-timeout')}'`);
  return {
    nprocPerNode: int('nproc-per-node', 1), nnodes: int('nnodes', 1) ?? 1, nodeRank: int('node-rank', 0) ?? 0,
    masterAddr: values.get('master-addr') ?? null, masterPort: int('master-port', 1), devices,
    rankOffset: int('rank-offset', 0), worldSize: int('world-size', 1),
    launcher: values.get('launcher') ?? null, hostfile: values.get('hostfile') ?? null,
    include: values.get('include') ?? null, exclude: values.get('exclude') ?? null,
    numNodes: int('num-nodes', -1), numGpus: int('num-gpus', 1),
    run: flags.has('run'), dryRun: flags.has('dry-run'), exec: flags.has('exec'), killTimeout,
    prefix: !flags.has('no-prefix'), help: flags.has('help'), command: argv.slice(i),
  };
}

/** The launch keys of the config files (read without validation; loadConfig checks them later). */
interface LaunchKeys {
  launcher?: string;
  hostfile?: string | null;
  include?: string | null;
  exclude?: string | null;
  num_gpus?: number | null;
  num_nodes?: number | null;
  master_addr?: string | null;
  master_port?: number | null;
}

const CONFIG_FILE = /\.(ya?ml|json)$/i;

function readLaunchKeys(files: string[]): LaunchKeys {
  const out: Record<string, unknown> = {};
  for (const f of files) {
    if (!existsSync(f)) throw new LaunchError(`config file ${f} not found`);
    const doc = parseYaml(readFileSync(f, 'utf8')) as Record<string, unknown> | null;
    if (!doc || typeof doc !== 'object') continue;
    for (const [k, v] of Object.entries(doc)) out[k.replace(/-/g, '_')] = v;
  }
  return out as LaunchKeys;
}

/** Is this host name this machine? */
function isLocalHost(h: string): boolean {
  return h === 'localhost' || h === '127.0.0.1' || h === '::1' || h === hostname() || h === hostname().split('.')[0];
}

export interface RunLaunchOptions {
  env?: Record<string, string | undefined>;
  out?: (line: string) => void;
  err?: (line: string) => void;
}

/** `neox launch ARGS`: returns the exit code. */
export async function runLaunch(argv: string[], o: RunLaunchOptions = {}): Promise<number> {
  const a = parseLaunchArgs(argv);
  const out = o.out ?? ((l: string) => console.log(l));
  const err = o.err ?? ((l: string) => console.error(l));
  const env = o.env ?? process.env;
  if (a.help || a.command.length === 0) {
    out(LAUNCH_USAGE);
    return a.help ? 0 : 2;
  }
  const configFiles = a.exec ? [] : a.command.slice(1).filter((s) => CONFIG_FILE.test(s));
  const keys = configFiles.length ? readLaunchKeys(configFiles) : {};
  const masterPort = a.masterPort ?? keys.master_port ?? 29500;
  const validate = (worldSize: number) => {
    // Fail once, here, rather than in every rank.
    if (configFiles.length && a.command[0] === 'train') assertTrainable(loadConfig(configFiles, { worldSize }));
  };
  const runnerBase = (masterAddr: string): RunnerOptions => ({
    command: a.command, exec: a.exec, masterAddr, masterPort, cwd: process.cwd(), nodePath: process.execPath, neoxBin: NEOX_BIN,
  });
  const supervise1 = async (workers: Worker[]) => {
    const r = await supervise(workers, { killTimeout: a.killTimeout, out, err });
    if (r.message) err(r.message);
    return r.code;
  };
  const local = async (nproc: number, devices: number[] | null, masterAddr: string) => {
    const worldSize = a.worldSize ?? a.nnodes * nproc;
    validate(worldSize);
    const workers = localWorkers({
      nprocPerNode: nproc, nnodes: a.nnodes, nodeRank: a.nodeRank, rankOffset: a.rankOffset ?? undefined, worldSize,
      masterAddr, masterPort, devices, argv: neoxArgv(runnerBase(masterAddr)), env, prefix: a.prefix,
    });
    if (a.dryRun) {
      for (const w of workers) out(`${w.label}: RANK=${w.env.RANK} LOCAL_RANK=${w.env.LOCAL_RANK} WORLD_SIZE=${w.env.WORLD_SIZE} ` +
        `MASTER_ADDR=${w.env.MASTER_ADDR} MASTER_PORT=${w.env.MASTER_PORT}${devices ? ` CUDA_VISIBLE_DEVICES=${devices.join(',')}` : ''} ${shellJoin(w.argv)}`);
      return 0;
    }
    return supervise1(workers);
  };

  // torchrun style: this node's processes.
  if (a.nprocPerNode !== null) {
    return local(a.nprocPerNode, a.devices, a.masterAddr ?? keys.master_addr ?? '127.0.0.1');
  }

  const launcher = (a.launcher ?? keys.launcher ?? 'pdsh').toLowerCase();
  const hostfile = findHostfile(a.hostfile ?? keys.hostfile ?? null, env);
  const filter = {
    include: a.include ?? keys.include, exclude: a.exclude ?? keys.exclude,
    numNodes: a.numNodes ?? keys.num_nodes, numGpus: a.numGpus ?? keys.num_gpus,
  };
  const active: ActiveResources | null = hostfile ? filterResources(readHostfile(hostfile), filter) : null;
  const firstHost = active ? [...active.keys()][0]! : null;
  const masterAddr = a.masterAddr ?? keys.master_addr ?? firstHost ?? '127.0.0.1';
  const worldOf = (r: ActiveResources) => [...r.values()].reduce((n, s) => n + s.length, 0);

  switch (launcher) {
    case 'slurm':
    case 'openmpi': {
      const base = { ...runnerBase(masterAddr), exports: launcher === 'openmpi' ? collectExports(env) : undefined };
      let line: string[];
      if (launcher === 'slurm') {
        line = srunCommand(active, { ...base, numNodes: filter.numNodes, gpusPerNode: filter.numGpus });
        validate(active ? worldOf(active) : filter.numNodes! * filter.numGpus!);
      } else {
        if (!active) throw new LaunchError('launcher: openmpi needs a hostfile (hostfile key, --hostfile, DLTS_HOSTFILE or /job/hostfile)');
        line = mpirunCommand(active, base);
        validate(worldOf(active));
      }
      if (!a.run) {
        out(shellJoin(line));
        return 0;
      }
      return supervise1([{ label: line[0]!, prefix: '', argv: line, env }]);
    }
    case 'pdsh': {
      if (!active) {
        const n = filter.numGpus;
        if (!n) throw new LaunchError('no hostfile found (hostfile key, --hostfile, DLTS_HOSTFILE, /job/hostfile): say how many processes to start with --nproc-per-node N (or num_gpus)');
        return local(n, null, masterAddr);
      }
      if (active.size === 1 && isLocalHost(firstHost!)) {
        const slots = active.get(firstHost!)!;
        return local(slots.length, slots, a.masterAddr ?? keys.master_addr ?? '127.0.0.1');
      }
      validate(worldOf(active));
      const commands = pdshCommands(active, { ...runnerBase(masterAddr), exports: collectExports(env) });
      if (a.dryRun) {
        for (const c of commands) out(shellJoin(c.argv));
        return 0;
      }
      const pdshEnv = { ...env, PDSH_RCMD_TYPE: env.PDSH_RCMD_TYPE ?? 'ssh' };
      return supervise1(commands.map((c) => ({ label: `node ${c.host} (node rank ${c.nodeRank})`, prefix: '', argv: c.argv, env: pdshEnv })));
    }
    case 'mvapich':
      throw new LaunchError('launcher: mvapich is not supported by neox launch; use openmpi, slurm or pdsh');
    default:
      throw new LaunchError(`unknown launcher '${launcher}'; use pdsh, slurm or openmpi`);
  }
}
