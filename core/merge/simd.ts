/**
 * WebAssembly SIMD kernels for the dense products of the merges, with the module assembled here at load time from
 * the instruction lists below (no binary checked in, no fetch, no fs: core runs unchanged in Node, browsers and
 * workers). Plain JS tops out at about 1–2 G multiply-adds/s on these loops; the 128-bit lanes do two float64 or
 * four float32 multiply-adds per instruction pair. `simdKernels()` is null where WebAssembly SIMD is missing, and
 * every caller then keeps its JS path.
 *
 * Kernels (pointers and strides in bytes into the module's own memory; callers copy operands in):
 *   dotsF64Cols / dotsF32Cols / dotsF64Rows(rows, rowCount4, len, cols, colCount2, out, rowStride, colStride):
 *     out[i][c] = Σ_t rows[i][t]·cols[c][t] in float64, rows float32 (float64 for dotsF64Rows), cols float64
 *     (float32 for dotsF32Cols), for tiles of
 *     4 rows × 2 columns (rowCount4 a multiple of 4, colCount2 of 2; callers do the leftovers). Each sum is split
 *     into its even-t and odd-t halves (one per lane), added at the end: a different rounding order than the
 *     JS loops, within float64 rounding of them.
 *   denseF32(a, b, r, inDim, outCount4, inCount8, out, minus, scale):
 *     out[o][j] = fround(fround(scale·s) − minus[o][j]) with s = Σ_k b[o][k]·a[k][j] summed in float32 in
 *     increasing k (minus = 0: no subtraction), for tiles of 4 rows × 8 columns; exactly what
 *     `denseEntryF32` computes one entry at a time, so leftovers done in JS match bit for bit.
 *   magnitudeBand(x, count4, lo, hi, band, capacity, counts):
 *     over the float32 magnitude bit patterns m of x[0..count4): counts[0] = #(m > hi), counts[1] = #(lo ≤ m ≤ hi),
 *     and the in-band m in index order to band[0..capacity) (more are counted, not stored). The top-k trim's one
 *     pass over a dense product: all but the few lanes near the threshold are decided by 4-lane compares.
 *   tiesFused8(taus, thresholds, weights, count4, out, self, lambda, scale):
 *     the trim, TIES consensus and output scaling of product-space TIES for eight float32 task vectors (pointers,
 *     int32 magnitude thresholds and float64 weights in tables at taus, thresholds, weights): τ̂ᵢ = τᵢ where its
 *     magnitude bits are ≥ thresholds[i], else +0; then the same float64 operations, in the same order, as
 *     tiesConsensusUpTo8 (task-vectors.ts) with the per-input terms selected by sign masks instead of (x ± |x|)/2
 *     (equal wherever the elected branch reads them); out = fround((self + lambda·fround(merged)) / scale), self
 *     0 when the pointer is 0. `tiesFusedEntries` (strategies/ties.ts) is the same in JS, for the leftovers.
 *   matvecRows / rank2Update(a, n, from, …): the Householder tridiagonalisation's O(n³) loops (tridiagonalSources).
 */

type Token = string | number | readonly number[];

/** Opcode table: byte prefix and the kind of immediate that follows (`fd` = SIMD prefix, opcode as LEB128). */
const OPS: Record<string, { code: number[]; imm?: 'local' | 'memarg' | 'i32' | 'label' | 'lane' | 'v128zero' | 'f32' | 'shuffle' }> = {
  block: { code: [0x02, 0x40] }, loop: { code: [0x03, 0x40] }, if: { code: [0x04, 0x40] }, end: { code: [0x0b] },
  br: { code: [0x0c], imm: 'label' }, br_if: { code: [0x0d], imm: 'label' },
  'local.get': { code: [0x20], imm: 'local' }, 'local.set': { code: [0x21], imm: 'local' }, 'local.tee': { code: [0x22], imm: 'local' },
  'f32.load': { code: [0x2a], imm: 'memarg' }, 'f64.load': { code: [0x2b], imm: 'memarg' },
  'f32.store': { code: [0x38], imm: 'memarg' }, 'f64.store': { code: [0x39], imm: 'memarg' },
  'i32.const': { code: [0x41], imm: 'i32' }, 'f32.const': { code: [0x43], imm: 'f32' },
  'i32.eqz': { code: [0x45] }, 'i32.ge_s': { code: [0x4e] }, 'i32.lt_s': { code: [0x48] },
  'i32.add': { code: [0x6a] }, 'i32.sub': { code: [0x6b] }, 'i32.mul': { code: [0x6c] }, 'i32.and': { code: [0x71] },
  'f32.add': { code: [0x92] }, 'f32.sub': { code: [0x93] }, 'f32.mul': { code: [0x94] },
  'f64.add': { code: [0xa0] }, 'f64.mul': { code: [0xa2] }, 'f64.promote_f32': { code: [0xbb] },
  'v128.load': { code: [0xfd, 0x00], imm: 'memarg' }, 'v128.load32_splat': { code: [0xfd, 0x09], imm: 'memarg' },
  'v128.load64_zero': { code: [0xfd, 0x5d], imm: 'memarg' }, 'v128.store': { code: [0xfd, 0x0b], imm: 'memarg' },
  'v128.const0': { code: [0xfd, 0x0c], imm: 'v128zero' }, 'f32x4.splat': { code: [0xfd, 0x13] },
  'f64x2.extract_lane': { code: [0xfd, 0x21], imm: 'lane' },
  'f32x4.add': { code: [0xfd, 0xe4, 0x01] }, 'f32x4.sub': { code: [0xfd, 0xe5, 0x01] }, 'f32x4.mul': { code: [0xfd, 0xe6, 0x01] },
  'f64x2.add': { code: [0xfd, 0xf0, 0x01] }, 'f64x2.mul': { code: [0xfd, 0xf2, 0x01] },
  'f64x2.promote_low_f32x4': { code: [0xfd, 0x5f] },
  select: { code: [0x1b] }, 'i32.le_s': { code: [0x4c] }, 'i32.store': { code: [0x36], imm: 'memarg' },
  'i32.load': { code: [0x28], imm: 'memarg' }, 'f64.div': { code: [0xa3] }, 'f64.sub': { code: [0xa1] },
  'f64x2.sub': { code: [0xfd, 0xf1, 0x01] }, 'i32.gt_s': { code: [0x4a] },
  'v128.load64_splat': { code: [0xfd, 0x0a], imm: 'memarg' }, 'i8x16.shuffle': { code: [0xfd, 0x0d], imm: 'shuffle' },
  'i32x4.splat': { code: [0xfd, 0x11] }, 'f64x2.splat': { code: [0xfd, 0x14] },
  'i32x4.extract_lane': { code: [0xfd, 0x1b], imm: 'lane' },
  'i32x4.gt_s': { code: [0xfd, 0x3b] }, 'i32x4.le_s': { code: [0xfd, 0x3d] }, 'i32x4.ge_s': { code: [0xfd, 0x3f] },
  'f32x4.lt': { code: [0xfd, 0x43] }, 'f32x4.gt': { code: [0xfd, 0x44] },
  'f64x2.lt': { code: [0xfd, 0x49] }, 'f64x2.gt': { code: [0xfd, 0x4a] },
  'v128.and': { code: [0xfd, 0x4e] }, 'v128.or': { code: [0xfd, 0x50] }, 'v128.any_true': { code: [0xfd, 0x53] },
  'f32x4.demote_f64x2_zero': { code: [0xfd, 0x5e] },
  'i32x4.sub': { code: [0xfd, 0xb1, 0x01] },
  'i64x2.extend_low_i32x4_s': { code: [0xfd, 0xc7, 0x01] }, 'i64x2.extend_high_i32x4_s': { code: [0xfd, 0xc8, 0x01] },
  'f64x2.div': { code: [0xfd, 0xf3, 0x01] },
};

const I32 = 0x7f, F32 = 0x7d, F64 = 0x7c, V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

interface FunctionSource {
  name: string;
  params: Array<[string, number]>;
  locals: Array<[string, number]>;
  body: Token[];
}

/** Encodes one function body: tokens are opcode names, each followed by its immediate (local name, offset, …). */
function encodeBody(fn: FunctionSource): number[] {
  const index = new Map<string, number>();
  [...fn.params, ...fn.locals].forEach(([name], i) => index.set(name, i));
  const bytes: number[] = [];
  bytes.push(...uleb(fn.locals.length));
  for (const [, type] of fn.locals) bytes.push(1, type);
  for (let p = 0; p < fn.body.length; p++) {
    const token = fn.body[p];
    const op = OPS[token as string];
    if (!op) throw new Error(`simd assembler: unknown op ${String(token)} in ${fn.name}`);
    bytes.push(...op.code);
    switch (op.imm) {
      case 'local': {
        const i = index.get(fn.body[++p] as string);
        if (i === undefined) throw new Error(`simd assembler: unknown local ${String(fn.body[p])} in ${fn.name}`);
        bytes.push(...uleb(i));
        break;
      }
      case 'memarg': // alignment hint 0 (any alignment is valid), then the constant offset
        bytes.push(0, ...uleb(fn.body[++p] as number));
        break;
      case 'i32':
        bytes.push(...sleb(fn.body[++p] as number));
        break;
      case 'f32':
        bytes.push(...new Uint8Array(Float32Array.of(fn.body[++p] as number).buffer));
        break;
      case 'label':
      case 'lane':
        bytes.push(...uleb(fn.body[++p] as number));
        break;
      case 'v128zero':
        bytes.push(...new Array(16).fill(0));
        break;
      case 'shuffle': // the 16 byte-lane indices
        bytes.push(...(fn.body[++p] as readonly number[]));
        break;
    }
  }
  bytes.push(0x0b);
  return [...uleb(bytes.length), ...bytes];
}

function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

function names(s: string): number[] {
  const b = [...s].map((ch) => ch.charCodeAt(0)); // export names are ASCII
  return [...uleb(b.length), ...b];
}

/** A module exporting `memory` and the functions, each with its own type (there are few). */
export function assemble(functions: FunctionSource[]): Uint8Array<ArrayBuffer> {
  const types = functions.flatMap((fn) => [0x60, ...uleb(fn.params.length), ...fn.params.map(([, t]) => t), 0]);
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [...uleb(functions.length), ...types]),
    ...section(3, [...uleb(functions.length), ...functions.flatMap((_, i) => uleb(i))]),
    ...section(5, [1, 0x00, ...uleb(1)]),
    ...section(7, [...uleb(functions.length + 1), ...names('memory'), 2, 0, ...functions.flatMap((fn, i) => [...names(fn.name), 0, ...uleb(i)])]),
    ...section(10, [...uleb(functions.length), ...functions.flatMap(encodeBody)]),
  ];
  return Uint8Array.from(bytes);
}

// ---------------------------------------------------------------------------------------------------------------
// Kernel sources. Loops are `block loop <exit test> br_if 1 … br 0 end end`.

/** The 4×2-tile float64 dot-product kernel; `rowType` and `colType` are the element types of rows and columns. */
function dotsSource(name: string, colType: 'f32' | 'f64', rowType: 'f32' | 'f64' = 'f32'): FunctionSource {
  const colBytes = colType === 'f64' ? 8 : 4;
  const rowBytes = rowType === 'f64' ? 8 : 4;
  const acc = (i: number, j: number) => `s${i}${j}`;
  const body: Token[] = [];
  const emit = (...t: Token[]) => body.push(...t);
  const loadCol = (ptr: string) =>
    colType === 'f64' ? ['local.get', ptr, 'local.get', 'tc', 'i32.add', 'v128.load', 0]
      : ['local.get', ptr, 'local.get', 'tc', 'i32.add', 'v128.load64_zero', 0, 'f64x2.promote_low_f32x4'];
  // rowBytes = len·rowBytes, colStep = len·colBytes, pairBytes = (len & ~1)·rowBytes (tr walks the rows)
  emit('local.get', 'len', 'i32.const', rowBytes, 'i32.mul', 'local.set', 'rowBytes');
  emit('local.get', 'len', 'i32.const', colBytes, 'i32.mul', 'local.set', 'colStep');
  emit('local.get', 'len', 'i32.const', -2, 'i32.and', 'i32.const', rowBytes, 'i32.mul', 'local.set', 'pairBytes');
  emit('i32.const', 0, 'local.set', 'i');
  emit('block', 'loop', 'local.get', 'i', 'local.get', 'rowCount4', 'i32.ge_s', 'br_if', 1);
  emit('local.get', 'rows', 'local.get', 'i', 'local.get', 'rowBytes', 'i32.mul', 'i32.add', 'local.set', 'p0');
  emit('local.get', 'p0', 'local.get', 'rowBytes', 'i32.add', 'local.set', 'p1');
  emit('local.get', 'p1', 'local.get', 'rowBytes', 'i32.add', 'local.set', 'p2');
  emit('local.get', 'p2', 'local.get', 'rowBytes', 'i32.add', 'local.set', 'p3');
  emit('i32.const', 0, 'local.set', 'c');
  emit('block', 'loop', 'local.get', 'c', 'local.get', 'colCount2', 'i32.ge_s', 'br_if', 1);
  emit('local.get', 'cols', 'local.get', 'c', 'local.get', 'colStep', 'i32.mul', 'i32.add', 'local.set', 'q0');
  emit('local.get', 'q0', 'local.get', 'colStep', 'i32.add', 'local.set', 'q1');
  for (let i = 0; i < 4; i++) for (let j = 0; j < 2; j++) emit('v128.const0', 'local.set', acc(i, j));
  emit('i32.const', 0, 'local.set', 'tr', 'i32.const', 0, 'local.set', 'tc');
  emit('block', 'loop', 'local.get', 'tr', 'local.get', 'pairBytes', 'i32.ge_s', 'br_if', 1);
  for (let i = 0; i < 4; i++) {
    emit('local.get', `p${i}`, 'local.get', 'tr', 'i32.add', ...(rowType === 'f64' ? ['v128.load', 0] : ['v128.load64_zero', 0, 'f64x2.promote_low_f32x4']), 'local.set', `r${i}`);
  }
  emit(...loadCol('q0'), 'local.set', 'b0', ...loadCol('q1'), 'local.set', 'b1');
  for (let i = 0; i < 4; i++) for (let j = 0; j < 2; j++) {
    emit('local.get', acc(i, j), 'local.get', `r${i}`, 'local.get', `b${j}`, 'f64x2.mul', 'f64x2.add', 'local.set', acc(i, j));
  }
  emit('local.get', 'tr', 'i32.const', 2 * rowBytes, 'i32.add', 'local.set', 'tr');
  emit('local.get', 'tc', 'i32.const', 2 * colBytes, 'i32.add', 'local.set', 'tc');
  emit('br', 0, 'end', 'end');
  // Output address of the tile's top-left entry.
  emit('local.get', 'out', 'local.get', 'i', 'local.get', 'rowStride', 'i32.mul', 'i32.add', 'local.get', 'c', 'local.get', 'colStride', 'i32.mul', 'i32.add', 'local.set', 'o');
  for (let i = 0; i < 4; i++) for (let j = 0; j < 2; j++) {
    // s = lane 0 + lane 1, plus the last term when len is odd (tr, tc point at it after the loop).
    emit('local.get', acc(i, j), 'f64x2.extract_lane', 0, 'local.get', acc(i, j), 'f64x2.extract_lane', 1, 'f64.add', 'local.set', 'x');
    emit('local.get', 'len', 'i32.const', 1, 'i32.and', 'if');
    emit('local.get', 'x', 'local.get', `p${i}`, 'local.get', 'tr', 'i32.add', ...(rowType === 'f64' ? ['f64.load', 0] : ['f32.load', 0, 'f64.promote_f32']));
    emit('local.get', `q${j}`, 'local.get', 'tc', 'i32.add', ...(colType === 'f64' ? ['f64.load', 0] : ['f32.load', 0, 'f64.promote_f32']));
    emit('f64.mul', 'f64.add', 'local.set', 'x', 'end');
    emit('local.get', 'o', 'local.get', 'x', 'f64.store', 0);
    emit('local.get', 'o', 'local.get', 'colStride', 'i32.add', 'local.set', 'o');
    if (j === 1) {
      emit('local.get', 'o', 'local.get', 'colStride', 'i32.const', 2, 'i32.mul', 'i32.sub', 'local.get', 'rowStride', 'i32.add', 'local.set', 'o');
    }
  }
  emit('local.get', 'c', 'i32.const', 2, 'i32.add', 'local.set', 'c', 'br', 0, 'end', 'end');
  emit('local.get', 'i', 'i32.const', 4, 'i32.add', 'local.set', 'i', 'br', 0, 'end', 'end');
  const v128Locals: Array<[string, number]> = [];
  for (let i = 0; i < 4; i++) for (let j = 0; j < 2; j++) v128Locals.push([acc(i, j), V128]);
  return {
    name,
    params: [['rows', I32], ['rowCount4', I32], ['len', I32], ['cols', I32], ['colCount2', I32], ['out', I32], ['rowStride', I32], ['colStride', I32]],
    locals: [
      ['i', I32], ['c', I32], ['tr', I32], ['tc', I32], ['rowBytes', I32], ['colStep', I32], ['pairBytes', I32], ['o', I32],
      ['p0', I32], ['p1', I32], ['p2', I32], ['p3', I32], ['q0', I32], ['q1', I32],
      ['r0', V128], ['r1', V128], ['r2', V128], ['r3', V128], ['b0', V128], ['b1', V128], ...v128Locals, ['x', F64],
    ],
    body,
  };
}

/** The 4×8-tile float32 B·A kernel (see the file comment). */
function denseSource(): FunctionSource {
  const acc = (i: number, h: number) => `s${i}${h}`;
  const body: Token[] = [];
  const emit = (...t: Token[]) => body.push(...t);
  emit('local.get', 'inDim', 'i32.const', 4, 'i32.mul', 'local.set', 'aRow');
  emit('local.get', 'r', 'i32.const', 4, 'i32.mul', 'local.set', 'bRow');
  emit('local.get', 'scale', 'f32x4.splat', 'local.set', 'sc');
  emit('i32.const', 0, 'local.set', 'o');
  emit('block', 'loop', 'local.get', 'o', 'local.get', 'outCount4', 'i32.ge_s', 'br_if', 1);
  emit('i32.const', 0, 'local.set', 'j');
  emit('block', 'loop', 'local.get', 'j', 'local.get', 'inCount8', 'i32.ge_s', 'br_if', 1);
  for (let i = 0; i < 4; i++) for (let h = 0; h < 2; h++) emit('v128.const0', 'local.set', acc(i, h));
  // pa walks down column block j of A (one row of A per k), pb along row o of B.
  emit('local.get', 'a', 'local.get', 'j', 'i32.const', 4, 'i32.mul', 'i32.add', 'local.set', 'pa');
  emit('local.get', 'b', 'local.get', 'o', 'local.get', 'bRow', 'i32.mul', 'i32.add', 'local.set', 'pb');
  emit('local.get', 'pb', 'local.get', 'bRow', 'i32.add', 'local.set', 'pbEnd');
  emit('block', 'loop', 'local.get', 'pb', 'local.get', 'pbEnd', 'i32.ge_s', 'br_if', 1);
  emit('local.get', 'pa', 'v128.load', 0, 'local.set', 'a0', 'local.get', 'pa', 'v128.load', 16, 'local.set', 'a1');
  for (let i = 0; i < 4; i++) {
    emit('local.get', 'pb', 'local.get', 'bRow', 'i32.const', i, 'i32.mul', 'i32.add', 'v128.load32_splat', 0, 'local.set', 'bk');
    for (let h = 0; h < 2; h++) emit('local.get', acc(i, h), 'local.get', 'bk', 'local.get', `a${h}`, 'f32x4.mul', 'f32x4.add', 'local.set', acc(i, h));
  }
  emit('local.get', 'pa', 'local.get', 'aRow', 'i32.add', 'local.set', 'pa');
  emit('local.get', 'pb', 'i32.const', 4, 'i32.add', 'local.set', 'pb', 'br', 0, 'end', 'end');
  for (let i = 0; i < 4; i++) {
    // Byte offset of out[o + i][j], shared by out and minus.
    emit('local.get', 'o', 'i32.const', i, 'i32.add', 'local.get', 'aRow', 'i32.mul', 'local.get', 'j', 'i32.const', 4, 'i32.mul', 'i32.add', 'local.set', 'at');
    for (let h = 0; h < 2; h++) {
      emit('local.get', 'out', 'local.get', 'at', 'i32.add');
      emit('local.get', acc(i, h), 'local.get', 'sc', 'f32x4.mul');
      emit('local.get', 'minus', 'if');
      emit('local.get', 'minus', 'local.get', 'at', 'i32.add', 'v128.load', 16 * h, 'local.set', 'm', 'end');
      emit('local.get', 'm', 'f32x4.sub');
      emit('v128.store', 16 * h);
    }
  }
  emit('local.get', 'j', 'i32.const', 8, 'i32.add', 'local.set', 'j', 'br', 0, 'end', 'end');
  emit('local.get', 'o', 'i32.const', 4, 'i32.add', 'local.set', 'o', 'br', 0, 'end', 'end');
  const v128Locals: Array<[string, number]> = [];
  for (let i = 0; i < 4; i++) for (let h = 0; h < 2; h++) v128Locals.push([acc(i, h), V128]);
  return {
    name: 'denseF32',
    params: [['a', I32], ['b', I32], ['r', I32], ['inDim', I32], ['outCount4', I32], ['inCount8', I32], ['out', I32], ['minus', I32], ['scale', F32]],
    locals: [
      ['o', I32], ['j', I32], ['pa', I32], ['pb', I32], ['pbEnd', I32], ['aRow', I32], ['bRow', I32], ['at', I32],
      ['a0', V128], ['a1', V128], ['bk', V128], ['sc', V128], ['m', V128], ...v128Locals,
    ],
    body,
  };
}

/** The magnitude-band scan of the top-k trim (see the file comment). */
function bandSource(): FunctionSource {
  const body: Token[] = [];
  const emit = (...t: Token[]) => body.push(...t);
  emit('local.get', 'lo', 'i32x4.splat', 'local.set', 'loV', 'local.get', 'hi', 'i32x4.splat', 'local.set', 'hiV');
  emit('i32.const', 0x7fffffff, 'i32x4.splat', 'local.set', 'absV', 'v128.const0', 'local.set', 'aboveV', 'i32.const', 0, 'local.set', 'count');
  emit('local.get', 'x', 'local.set', 'p', 'local.get', 'x', 'local.get', 'count4', 'i32.const', 4, 'i32.mul', 'i32.add', 'local.set', 'end');
  emit('block', 'loop', 'local.get', 'p', 'local.get', 'end', 'i32.ge_s', 'br_if', 1);
  emit('local.get', 'p', 'v128.load', 0, 'local.get', 'absV', 'v128.and', 'local.set', 'v');
  // A true lane compares to −1, so subtracting the mask counts it.
  emit('local.get', 'aboveV', 'local.get', 'v', 'local.get', 'hiV', 'i32x4.gt_s', 'i32x4.sub', 'local.set', 'aboveV');
  emit('local.get', 'v', 'local.get', 'loV', 'i32x4.ge_s', 'local.get', 'v', 'local.get', 'hiV', 'i32x4.le_s', 'v128.and', 'v128.any_true', 'if');
  for (let lane = 0; lane < 4; lane++) {
    // Store unconditionally (at the spare slot `capacity` once full) and advance only for a lane in the band.
    emit('local.get', 'v', 'i32x4.extract_lane', lane, 'local.set', 'm');
    emit('local.get', 'band', 'local.get', 'count', 'local.get', 'capacity', 'local.get', 'count', 'local.get', 'capacity', 'i32.lt_s', 'select');
    emit('i32.const', 4, 'i32.mul', 'i32.add', 'local.get', 'm', 'i32.store', 0);
    emit('local.get', 'count', 'local.get', 'm', 'local.get', 'lo', 'i32.ge_s', 'local.get', 'm', 'local.get', 'hi', 'i32.le_s', 'i32.and', 'i32.add', 'local.set', 'count');
  }
  emit('end');
  emit('local.get', 'p', 'i32.const', 16, 'i32.add', 'local.set', 'p', 'br', 0, 'end', 'end');
  emit('local.get', 'counts', 'local.get', 'aboveV', 'i32x4.extract_lane', 0, 'local.get', 'aboveV', 'i32x4.extract_lane', 1, 'i32.add');
  emit('local.get', 'aboveV', 'i32x4.extract_lane', 2, 'i32.add', 'local.get', 'aboveV', 'i32x4.extract_lane', 3, 'i32.add', 'i32.store', 0);
  emit('local.get', 'counts', 'local.get', 'count', 'i32.store', 4);
  return {
    name: 'magnitudeBand',
    params: [['x', I32], ['count4', I32], ['lo', I32], ['hi', I32], ['band', I32], ['capacity', I32], ['counts', I32]],
    locals: [['p', I32], ['end', I32], ['count', I32], ['m', I32], ['v', V128], ['loV', V128], ['hiV', V128], ['absV', V128], ['aboveV', V128]],
    body,
  };
}

/** The fused trim + TIES consensus + output scaling over eight task vectors (see the file comment). */
function tiesSource(): FunctionSource {
  const body: Token[] = [];
  const emit = (...t: Token[]) => body.push(...t);
  const HIGH_TO_LOW = [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];
  const LOWS = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
  const halves = ['L', 'H'];
  const sums = ['sum', 'pos', 'neg', 'pw', 'nw'];
  for (let i = 0; i < 8; i++) {
    emit('local.get', 'taus', 'i32.load', 4 * i, 'local.set', `t${i}`);
    emit('local.get', 'thresholds', 'v128.load32_splat', 4 * i, 'local.set', `th${i}`);
    emit('local.get', 'weights', 'v128.load64_splat', 8 * i, 'local.set', `w${i}`);
  }
  emit('i32.const', 0x7fffffff, 'i32x4.splat', 'local.set', 'absV');
  emit('local.get', 'lambda', 'f64x2.splat', 'local.set', 'lam', 'local.get', 'scale', 'f64x2.splat', 'local.set', 'sc');
  emit('i32.const', 0, 'local.set', 'off', 'local.get', 'count4', 'i32.const', 4, 'i32.mul', 'local.set', 'end');
  emit('block', 'loop', 'local.get', 'off', 'local.get', 'end', 'i32.ge_s', 'br_if', 1);
  for (const s of sums) for (const h of halves) emit('v128.const0', 'local.set', `${s}${h}`);
  for (let i = 0; i < 8; i++) {
    // v, with the entries below this input's threshold magnitude zeroed (the trim), then its sign masks.
    emit('local.get', `t${i}`, 'local.get', 'off', 'i32.add', 'v128.load', 0, 'local.tee', 'v');
    emit('local.get', 'v', 'local.get', 'absV', 'v128.and', 'local.get', `th${i}`, 'i32x4.ge_s', 'v128.and', 'local.set', 'v');
    emit('local.get', 'v', 'v128.const0', 'f32x4.gt', 'local.set', 'mp', 'local.get', 'v', 'v128.const0', 'f32x4.lt', 'local.set', 'mn');
    emit('local.get', `w${i}`, 'local.get', 'v', 'f64x2.promote_low_f32x4', 'f64x2.mul', 'local.set', 'xL');
    emit('local.get', `w${i}`, 'local.get', 'v', 'local.get', 'v', 'i8x16.shuffle', HIGH_TO_LOW, 'f64x2.promote_low_f32x4', 'f64x2.mul', 'local.set', 'xH');
    for (const h of halves) {
      const extend = h === 'L' ? 'i64x2.extend_low_i32x4_s' : 'i64x2.extend_high_i32x4_s';
      emit('local.get', `sum${h}`, 'local.get', `x${h}`, 'f64x2.add', 'local.set', `sum${h}`);
      for (const [mask, value, weight] of [['mp', 'pos', 'pw'], ['mn', 'neg', 'nw']]) {
        emit('local.get', mask, extend, 'local.set', 'wide');
        emit('local.get', `${value}${h}`, 'local.get', `x${h}`, 'local.get', 'wide', 'v128.and', 'f64x2.add', 'local.set', `${value}${h}`);
        emit('local.get', `${weight}${h}`, 'local.get', `w${i}`, 'local.get', 'wide', 'v128.and', 'f64x2.add', 'local.set', `${weight}${h}`);
      }
    }
  }
  emit('v128.const0', 'local.set', 'selfL', 'v128.const0', 'local.set', 'selfH');
  emit('local.get', 'self', 'if');
  emit('local.get', 'self', 'local.get', 'off', 'i32.add', 'v128.load', 0, 'local.tee', 'v', 'f64x2.promote_low_f32x4', 'local.set', 'selfL');
  emit('local.get', 'v', 'local.get', 'v', 'i8x16.shuffle', HIGH_TO_LOW, 'f64x2.promote_low_f32x4', 'local.set', 'selfH', 'end');
  for (const h of halves) {
    // merged = pos/pw where sum > 0 and pw > 0, neg/nw where sum < 0 and nw > 0, else +0; rounded to float32,
    // then (self + lambda·merged) / scale.
    emit('local.get', `pos${h}`, 'local.get', `pw${h}`, 'f64x2.div');
    emit('local.get', `sum${h}`, 'v128.const0', 'f64x2.gt', 'local.get', `pw${h}`, 'v128.const0', 'f64x2.gt', 'v128.and', 'v128.and');
    emit('local.get', `neg${h}`, 'local.get', `nw${h}`, 'f64x2.div');
    emit('local.get', `sum${h}`, 'v128.const0', 'f64x2.lt', 'local.get', `nw${h}`, 'v128.const0', 'f64x2.gt', 'v128.and', 'v128.and');
    emit('v128.or', 'f32x4.demote_f64x2_zero', 'f64x2.promote_low_f32x4', 'local.set', 'wide');
    emit('local.get', `self${h}`, 'local.get', 'lam', 'local.get', 'wide', 'f64x2.mul', 'f64x2.add', 'local.get', 'sc', 'f64x2.div');
    emit('f32x4.demote_f64x2_zero', 'local.set', `r${h}`);
  }
  emit('local.get', 'out', 'local.get', 'off', 'i32.add', 'local.get', 'rL', 'local.get', 'rH', 'i8x16.shuffle', LOWS, 'v128.store', 0);
  emit('local.get', 'off', 'i32.const', 16, 'i32.add', 'local.set', 'off', 'br', 0, 'end', 'end');
  const locals: Array<[string, number]> = [['off', I32], ['end', I32]];
  for (let i = 0; i < 8; i++) locals.push([`t${i}`, I32], [`th${i}`, V128], [`w${i}`, V128]);
  for (const s of sums) for (const h of halves) locals.push([`${s}${h}`, V128]);
  for (const name of ['absV', 'lam', 'sc', 'v', 'mp', 'mn', 'xL', 'xH', 'wide', 'selfL', 'selfH', 'rL', 'rH']) locals.push([name, V128]);
  return {
    name: 'tiesFused8',
    params: [['taus', I32], ['thresholds', I32], ['weights', I32], ['count4', I32], ['out', I32], ['self', I32], ['lambda', F64], ['scale', F64]],
    locals,
    body,
  };
}

/**
 * The two O(n³) loops of the Householder tridiagonalisation, on the trailing block [from, n)² of a row-major
 * float64 n×n matrix: matvecRows (y[i] = Σ_j a[i][j]·x[j], two-lane partial sums added at the end) and
 * rank2Update (a[i][j] −= v[i]·w[j] + w[i]·v[j], per entry exactly as the JS loop).
 */
function tridiagonalSources(): FunctionSource[] {
  const rowLoop = (inner: Token[]): Token[] => [
    'local.get', 'from', 'local.set', 'i',
    'local.get', 'n', 'local.get', 'from', 'i32.sub', 'local.set', 'len',
    'local.get', 'len', 'i32.const', -2, 'i32.and', 'i32.const', 8, 'i32.mul', 'local.set', 'pairBytes',
    'block', 'loop', 'local.get', 'i', 'local.get', 'n', 'i32.ge_s', 'br_if', 1,
    // row = &a[i][from], col = from·8 (offset into the vectors)
    'local.get', 'a', 'local.get', 'i', 'local.get', 'n', 'i32.mul', 'local.get', 'from', 'i32.add', 'i32.const', 8, 'i32.mul', 'i32.add', 'local.set', 'row',
    ...inner,
    'local.get', 'i', 'i32.const', 1, 'i32.add', 'local.set', 'i', 'br', 0, 'end', 'end',
  ];
  const matvec: Token[] = rowLoop([
    'v128.const0', 'local.set', 'acc', 'i32.const', 0, 'local.set', 't',
    'block', 'loop', 'local.get', 't', 'local.get', 'pairBytes', 'i32.ge_s', 'br_if', 1,
    'local.get', 'acc', 'local.get', 'row', 'local.get', 't', 'i32.add', 'v128.load', 0,
    'local.get', 'x', 'local.get', 'from', 'i32.const', 8, 'i32.mul', 'i32.add', 'local.get', 't', 'i32.add', 'v128.load', 0,
    'f64x2.mul', 'f64x2.add', 'local.set', 'acc',
    'local.get', 't', 'i32.const', 16, 'i32.add', 'local.set', 't', 'br', 0, 'end', 'end',
    'local.get', 'acc', 'f64x2.extract_lane', 0, 'local.get', 'acc', 'f64x2.extract_lane', 1, 'f64.add', 'local.set', 's',
    'local.get', 'len', 'i32.const', 1, 'i32.and', 'if',
    'local.get', 's', 'local.get', 'row', 'local.get', 't', 'i32.add', 'f64.load', 0,
    'local.get', 'x', 'local.get', 'from', 'i32.const', 8, 'i32.mul', 'i32.add', 'local.get', 't', 'i32.add', 'f64.load', 0,
    'f64.mul', 'f64.add', 'local.set', 's', 'end',
    'local.get', 'y', 'local.get', 'i', 'i32.const', 8, 'i32.mul', 'i32.add', 'local.get', 's', 'f64.store', 0,
  ]);
  // a[i][j] −= v[i]·w[j] + w[i]·v[j]
  const term = (load: 'v128.load' | 'f64.load', mul: string, add: string, sub: string, vi: string, wi: string): Token[] => [
    'local.get', 'row', 'local.get', 't', 'i32.add',
    'local.get', 'row', 'local.get', 't', 'i32.add', load, 0,
    'local.get', vi, 'local.get', 'w', 'local.get', 'from', 'i32.const', 8, 'i32.mul', 'i32.add', 'local.get', 't', 'i32.add', load, 0, mul,
    'local.get', wi, 'local.get', 'v', 'local.get', 'from', 'i32.const', 8, 'i32.mul', 'i32.add', 'local.get', 't', 'i32.add', load, 0, mul,
    add, sub, load === 'v128.load' ? 'v128.store' : 'f64.store', 0,
  ];
  const update: Token[] = rowLoop([
    'local.get', 'v', 'local.get', 'i', 'i32.const', 8, 'i32.mul', 'i32.add', 'f64.load', 0, 'local.tee', 'vi', 'f64x2.splat', 'local.set', 'viV',
    'local.get', 'w', 'local.get', 'i', 'i32.const', 8, 'i32.mul', 'i32.add', 'f64.load', 0, 'local.tee', 'wi', 'f64x2.splat', 'local.set', 'wiV',
    'i32.const', 0, 'local.set', 't',
    'block', 'loop', 'local.get', 't', 'local.get', 'pairBytes', 'i32.ge_s', 'br_if', 1,
    ...term('v128.load', 'f64x2.mul', 'f64x2.add', 'f64x2.sub', 'viV', 'wiV'),
    'local.get', 't', 'i32.const', 16, 'i32.add', 'local.set', 't', 'br', 0, 'end', 'end',
    'local.get', 'len', 'i32.const', 1, 'i32.and', 'if',
    ...term('f64.load', 'f64.mul', 'f64.add', 'f64.sub', 'vi', 'wi'),
    'end',
  ]);
  const common: Array<[string, number]> = [['i', I32], ['len', I32], ['pairBytes', I32], ['row', I32], ['t', I32]];
  return [
    { name: 'matvecRows', params: [['a', I32], ['n', I32], ['from', I32], ['x', I32], ['y', I32]], locals: [...common, ['acc', V128], ['s', F64]], body: matvec },
    {
      name: 'rank2Update',
      params: [['a', I32], ['n', I32], ['from', I32], ['v', I32], ['w', I32]],
      locals: [...common, ['vi', F64], ['wi', F64], ['viV', V128], ['wiV', V128]],
      body: update,
    },
  ];
}

/** The module's bytes, assembled from the sources above (deterministic: same source, same bytes). */
export function kernelModuleBytes(): Uint8Array<ArrayBuffer> {
  return assemble([dotsSource('dotsF64Cols', 'f64'), dotsSource('dotsF32Cols', 'f32'), denseSource(), bandSource(), tiesSource(), dotsSource('dotsF64Rows', 'f64', 'f64'), ...tridiagonalSources()]);
}

/** The few WebAssembly JS API members used here (core compiles without the DOM and WebAssembly typings). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}

interface Exports {
  memory: WasmMemory;
  dotsF64Cols(rows: number, rowCount4: number, len: number, cols: number, colCount2: number, out: number, rowStride: number, colStride: number): void;
  dotsF32Cols(rows: number, rowCount4: number, len: number, cols: number, colCount2: number, out: number, rowStride: number, colStride: number): void;
  dotsF64Rows(rows: number, rowCount4: number, len: number, cols: number, colCount2: number, out: number, rowStride: number, colStride: number): void;
  denseF32(a: number, b: number, r: number, inDim: number, outCount4: number, inCount8: number, out: number, minus: number, scale: number): void;
  magnitudeBand(x: number, count4: number, lo: number, hi: number, band: number, capacity: number, counts: number): void;
  matvecRows(a: number, n: number, from: number, x: number, y: number): void;
  rank2Update(a: number, n: number, from: number, v: number, w: number): void;
  tiesFused8(taus: number, thresholds: number, weights: number, count4: number, out: number, self: number, lambda: number, scale: number): void;
}

/**
 * One instance of the kernels with its own memory, handed out in 16-byte-aligned slices by a bump allocator.
 * `reserve` sizes the memory for a whole computation up front (growing detaches views, so take views after it).
 */
export class Kernels {
  private top = 16; // address 0 stays unused, so a 0 pointer can mean "none"
  constructor(readonly exports: Exports) {}

  get memory(): ArrayBuffer {
    return this.exports.memory.buffer;
  }

  /** Frees everything allocated so far and makes sure `bytes` more fit. */
  reset(bytes: number): void {
    this.top = 16;
    const need = 16 + bytes + 16 * 64; // slack for the alignment of up to 64 slices
    const have = this.exports.memory.buffer.byteLength;
    if (need > have) this.exports.memory.grow(Math.ceil((need - have) / 65536));
  }

  alloc(bytes: number): number {
    const ptr = this.top;
    this.top = (ptr + bytes + 15) & ~15;
    if (this.top > this.exports.memory.buffer.byteLength) throw new Error('simd: allocation beyond reserve()');
    return ptr;
  }

  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.exports.memory.buffer, ptr, length);
  }

  f64(ptr: number, length: number): Float64Array {
    return new Float64Array(this.exports.memory.buffer, ptr, length);
  }
}

let compiled: object | null | undefined;

/** The compiled module, or null where WebAssembly or its SIMD proposal is missing. */
function kernelModule(): object | null {
  if (compiled !== undefined) return compiled;
  compiled = null;
  try {
    const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    if (!wasm || forceJs) return compiled;
    const bytes = kernelModuleBytes();
    if (wasm.validate(bytes)) compiled = new wasm.Module(bytes);
  } catch {
    compiled = null;
  }
  return compiled;
}

let forceJs = false;

/** Tests and benchmarks: turn the kernels off (true) to exercise and time the JS paths. */
export function disableSimd(disabled: boolean): void {
  forceJs = disabled;
  compiled = undefined;
  shared = undefined;
}

/** A fresh instance (own memory, freed with it) for a computation whose buffers should not outlive it. */
export function createKernels(): Kernels | null {
  const module = kernelModule();
  if (!module) return null;
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly!;
  return new Kernels(new wasm.Instance(module, {}).exports as Exports);
}

let shared: Kernels | null | undefined;

/** The instance the small linear-algebra helpers share (its memory only grows to the largest operands seen). */
export function sharedKernels(): Kernels | null {
  if (shared === undefined) shared = createKernels();
  return shared;
}

/** One entry of denseF32, in JS: float32 products summed in float32 in increasing k, scaled, minus subtracted. */
export function denseEntryF32(a: Float32Array, b: Float32Array, r: number, inDim: number, o: number, j: number, scale: number, minus: number): number {
  let s = 0;
  for (let k = 0; k < r; k++) s = Math.fround(s + Math.fround(b[o * r + k] * a[k * inDim + j]));
  return Math.fround(Math.fround(Math.fround(scale) * s) - minus);
}
