// `swarm merge`: merge Hugging Face PEFT LoRA adapters on disk with any registered strategy.
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, exportPeft, importPeft } from '../core/io/peft.ts';
import { getStrategy, listStrategies, MergeParamError, resolveParams } from '../core/merge/registry.ts';
import type { MergeInput, MergeParams, MergeStrategy } from '../core/merge/types.ts';
import type { Adapter } from '../core/model/adapter.ts';

export class MergeUsageError extends Error {
  static override readonly name = 'MergeUsageError';
  override readonly name = MergeUsageError.name;
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const camel = (flag: string) => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

export function usage(): string {
  const lines = [
    'usage: swarm merge --strategy <name> [--weights w1,w2,...] [--seed n] [--<param> value ...] <adapter-dir>... --out <dir> [--force]',
    '',
    `Each <adapter-dir> holds ${ADAPTER_CONFIG_FILE} + ${ADAPTER_WEIGHTS_FILE} (Hugging Face PEFT LoRA). The first`,
    'adapter plays "self" for strategies that treat the merging peer specially. The output directory is written',
    'completely or not at all (temp dir + rename); --force replaces an existing one.',
    '',
    '  --strategy <name>   merge strategy (below)',
    '  --weights <list>    one non-negative weight per adapter, comma-separated (default: all 1)',
    '  --seed <n>          seed for random masks and sketches (default 0)',
    '  --out <dir>         output directory',
    '',
    'strategies and their parameters (--kebab-case flag, default):',
  ];
  for (const s of listStrategies()) {
    lines.push('', `  ${s.name}: ${s.description}`, `      ${s.reference}`);
    for (const p of s.params) {
      const range = p.choices ? ` {${p.choices.join('|')}}` : p.min !== undefined || p.max !== undefined ? ` [${p.min ?? ''}..${p.max ?? ''}]` : '';
      lines.push(`      --${kebab(p.name)} <${p.type}>${range}  default ${JSON.stringify(p.default)}: ${p.description}`);
    }
    if (s.params.length === 0) lines.push('      (no parameters)');
  }
  return lines.join('\n');
}

interface ParsedArgs {
  help: boolean;
  strategy?: string;
  weights?: string;
  seed?: string;
  out?: string;
  force: boolean;
  adapters: string[];
  params: Map<string, string | true>;
}

function parseArgs(argv: string[]): ParsedArgs {
  const parsed: ParsedArgs = { help: false, force: false, adapters: [], params: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      parsed.help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      parsed.adapters.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    const takeValue = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new MergeUsageError(`--${flag} needs a value`);
      i++;
      return next;
    };
    switch (flag) {
      case 'strategy': parsed.strategy = takeValue(); break;
      case 'weights': parsed.weights = takeValue(); break;
      case 'seed': parsed.seed = takeValue(); break;
      case 'out': parsed.out = takeValue(); break;
      case 'force': parsed.force = true; break;
      default: {
        // A strategy parameter: boolean flags may stand alone, everything else takes a value.
        const next = argv[i + 1];
        if (inline !== undefined) parsed.params.set(flag, inline);
        else if (next === undefined || next.startsWith('--')) parsed.params.set(flag, true);
        else parsed.params.set(flag, takeValue());
      }
    }
  }
  return parsed;
}

/** Flag strings → typed values by the strategy's declarations; resolveParams then checks ranges and names. */
function paramsFromFlags(strategy: MergeStrategy, flags: Map<string, string | true>): MergeParams {
  const given: Record<string, unknown> = {};
  for (const [flag, raw] of flags) {
    const name = camel(flag);
    const spec = strategy.params.find((p) => p.name === name);
    if (!spec) {
      const known = strategy.params.map((p) => `--${kebab(p.name)}`).join(', ') || 'none';
      throw new MergeParamError(`strategy '${strategy.name}' has no parameter --${flag} (parameters: ${known})`);
    }
    if (spec.type === 'boolean') {
      if (raw === true || raw === 'true') given[name] = true;
      else if (raw === 'false') given[name] = false;
      else throw new MergeUsageError(`--${flag} takes true or false, got '${raw}'`);
    } else if (raw === true) {
      throw new MergeUsageError(`--${flag} needs a value`);
    } else if (spec.type === 'number') {
      const value = raw.trim() === '' ? NaN : Number(raw);
      if (!Number.isFinite(value)) throw new MergeUsageError(`--${flag} must be a number, got '${raw}'`);
      given[name] = value;
    } else {
      given[name] = raw;
    }
  }
  return resolveParams(strategy, given);
}

function parseWeights(text: string | undefined, count: number): number[] {
  if (text === undefined) return new Array(count).fill(1);
  const parts = text.split(',');
  if (parts.length !== count) throw new MergeUsageError(`--weights has ${parts.length} values for ${count} adapters`);
  return parts.map((part, i) => {
    const w = part.trim() === '' ? NaN : Number(part);
    if (!Number.isFinite(w) || w < 0) throw new MergeUsageError(`--weights: value ${i + 1} ('${part}') must be a finite number >= 0`);
    return w;
  });
}

async function readAdapter(dir: string): Promise<{ adapter: Adapter; baseModel: string }> {
  const read = async (file: string) => {
    const path = join(dir, file);
    try {
      return await readFile(path);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new MergeUsageError(`${path}: ${code === 'ENOENT' ? 'missing' : (error as Error).message}`);
    }
  };
  const [configBytes, safetensors] = [await read(ADAPTER_CONFIG_FILE), await read(ADAPTER_WEIGHTS_FILE)];
  let config: unknown;
  try {
    config = JSON.parse(configBytes.toString('utf8'));
  } catch (error) {
    throw new MergeUsageError(`${join(dir, ADAPTER_CONFIG_FILE)}: not valid JSON (${(error as Error).message})`);
  }
  const declared = (config as { base_model_name_or_path?: unknown } | null)?.base_model_name_or_path;
  const baseModel = typeof declared === 'string' && declared !== '' ? declared : 'unknown';
  try {
    const adapter = importPeft({ adapterConfig: config, safetensors: new Uint8Array(safetensors.buffer, safetensors.byteOffset, safetensors.byteLength) }, baseModel);
    return { adapter, baseModel };
  } catch (error) {
    throw new MergeUsageError(`${dir}: ${(error as Error).message}`);
  }
}

/** Writes the files into a fresh sibling directory, then renames it into place, so `out` is never partial. */
async function writeAtomically(out: string, files: Record<string, Uint8Array>): Promise<void> {
  const target = resolve(out);
  const parent = dirname(target);
  await mkdir(parent, { recursive: true });
  const temp = join(parent, `.${basename(target)}.tmp-${process.pid}-${Date.now()}`);
  await mkdir(temp);
  try {
    for (const [name, bytes] of Object.entries(files)) await writeFile(join(temp, name), bytes);
    if (existsSync(target)) {
      const old = `${temp}.old`;
      await rename(target, old);
      await rename(temp, target);
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(temp, target);
    }
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
}

export async function main(argv: string[]): Promise<number> {
  try {
    const args = parseArgs(argv);
    if (args.help) {
      console.log(usage());
      return 0;
    }
    if (!args.strategy) throw new MergeUsageError('--strategy is required (swarm merge --help lists them)');
    const strategy = getStrategy(args.strategy);
    const params = paramsFromFlags(strategy, args.params);
    if (args.adapters.length === 0) throw new MergeUsageError('no adapter directories given');
    if (!args.out) throw new MergeUsageError('--out <dir> is required');
    if (existsSync(args.out) && !args.force) throw new MergeUsageError(`${args.out} already exists (use --force to replace it)`);
    const weights = parseWeights(args.weights, args.adapters.length);
    const seed = args.seed === undefined ? 0 : Number(args.seed);
    if (!Number.isInteger(seed)) throw new MergeUsageError(`--seed must be an integer, got '${args.seed}'`);

    const loaded = [];
    for (const dir of args.adapters) loaded.push(await readAdapter(dir));
    const inputs: MergeInput[] = loaded.map(({ adapter }, i) => ({
      adapter,
      weight: weights[i],
      meta: { peerId: args.adapters[i], samples: 0, ageMs: 0 },
    }));
    const merged = strategy.merge(inputs, params, { seed });
    await writeAtomically(args.out, exportPeft(merged, { baseModelNameOrPath: loaded[0].baseModel }));
    const shown = Object.entries(params).map(([k, v]) => `${kebab(k)}=${v}`).join(' ');
    console.log(`merged ${inputs.length} adapters with ${strategy.name}${shown ? ` (${shown})` : ''} into ${args.out}`);
    return 0;
  } catch (error) {
    const err = error as Error;
    const message = (err?.message ?? String(error)).replace(/\s*\n\s*/g, ' ');
    console.error(`swarm merge: ${err?.name && err.name !== 'Error' ? `${err.name}: ` : ''}${message}`);
    return err instanceof MergeUsageError ? 2 : 1;
  }
}
