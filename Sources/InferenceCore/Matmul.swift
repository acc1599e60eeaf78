import COpenBLAS
import Foundation

// Matrix multiply, the hot path of the whole engine.
//
// Layout (written once, used everywhere):
//   A  activations  [M, K] row-major, one row per token row of the batch
//   W  weight       [N, K] row-major, exactly as HF stores a Linear weight ([out, in])
//   C  output       [M, N] row-major
//   C = A · Wᵀ      — BLAS: cblas_sgemm(RowMajor, NoTrans, Trans, M, N, K, 1, A, K, W, K, 0, C, N)
//
// Two paths (DESIGN §2):
//  - `.streaming`: our weight-streaming SIMD kernel, for decode and verify (1–16 rows, and trees). Each weight
//    tile is read from memory once for all rows. Every output C[m, n] is computed the same way whatever M is:
//    one SIMD16 accumulator per (m, n), fused multiply-adds over K in order, one horizontal sum, then the
//    scalar tail. So a row's result never depends on the batch (batch invariance).
//  - `.blas`: OpenBLAS sgemm, for prompt prefill, where M is large and the weights are reused M times. Our pool
//    splits N and each thread calls a single-threaded sgemm on its slice of W, so one set of threads does all
//    the work (OpenBLAS's own threads would spin for a long while after each call, stealing the cores from decode).
//  `.gemvPerRow` exists for the kernel benchmark only (it is what sgemv-based engines do per verify row).

public enum MatmulPath: String, Sendable, CaseIterable {
    case streaming
    case blas
    case gemvPerRow
}

/// OpenBLAS runs single-threaded inside our pool's threads (set once, before the first sgemm).
let blasThreadsOnce: Void = { openblas_set_num_threads(1) }()

/// The kernels OpenBLAS chose for this CPU when it loaded ("SkylakeX", "Haswell", "Prescott", …; BLASCoreChoice).
public var blasCoreName: String { String(cString: openblas_get_corename()) }

/// C[M, N] = A[M, K] · W[N, K]ᵀ.
///
/// `next`: the weight the following streaming matmul reads. Each thread that waits here (for the other's share,
/// or for its next job) reads the start of its own share of it into the cache meanwhile (`WorkerPool.run`).
public func matmul(
    _ a: UnsafePointer<Float>, rows m: Int, weight: Tensor, into c: UnsafeMutablePointer<Float>,
    path: MatmulPath = .streaming, pool: WorkerPool = .shared, next: Tensor? = nil
) {
    let n = weight.rows, k = weight.columns
    guard m > 0, n > 0 else { return }
    switch path {
    case .streaming:
        // Tiles of 16 outputs keep each thread's share on whole cache lines of C. A weight with a BF16 copy streams
        // that (half the bytes, the same values).
        let prefetch = next.map { next in { (thread: Int) in streamingShare(of: next, thread: thread, pool: pool) } }
        if let half = weight.bf16 {
            pool.parallelForSharingTails(n, alignment: 16, tailPercent: sharedTailPercent, thenPrefetch: prefetch) { range in
                streamingMatmul(a, m: m, k: k, weight: UnsafePointer(half), outputs: range, c: c, ldc: n)
            }
        } else {
            pool.parallelForSharingTails(n, alignment: 16, tailPercent: sharedTailPercent, thenPrefetch: prefetch) { range in
                streamingMatmul(a, m: m, k: k, weight: UnsafePointer(weight.data), outputs: range, c: c, ldc: n)
            }
        }
    case .blas:
        _ = blasThreadsOnce
        // C[:, lo..<hi] = A · W[lo..<hi]ᵀ per thread: ldc stays N, W and C start at the slice.
        pool.parallelFor(n, alignment: 64) { range in
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(range.count), Int32(k),
                        1, a, Int32(k), weight.data + range.lowerBound * k, Int32(k), 0, c + range.lowerBound, Int32(n))
        }
    case .gemvPerRow:
        _ = blasThreadsOnce
        pool.parallelFor(n, alignment: 64) { range in
            for r in 0..<m {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(range.count), Int32(k), 1, weight.data + range.lowerBound * k,
                            Int32(k), a + r * k, 1, 0, c + r * n + range.lowerBound, 1)
            }
        }
    }
}

/// How much of its share of the next weight a waiting thread reads ahead, in bytes (`SPECSERVE_IDLE_PREFETCH`
/// overrides; 0 turns it off). The wait is usually shorter than this takes to stream; the next job cuts it short.
/// Measured on the shipped target (decode at context 256, on/off toggled in one process, medians of 21 pairs):
/// 128 KB 0.94–1.02×, 512 KB 0.96–0.99×, 2 MB 0.96–1.01× the step time without it.
let idlePrefetchBytes = ProcessInfo.processInfo.environment["SPECSERVE_IDLE_PREFETCH"].flatMap(Int.init) ?? 524288

/// The first `idlePrefetchBytes` of the rows of `weight` that `thread` streams in a streaming matmul.
func streamingShare(of weight: Tensor, thread: Int, pool: WorkerPool) -> IdleRegion {
    guard idlePrefetchBytes > 0, let rows = pool.chunk(thread, of: weight.rows, alignment: 16) else { return IdleRegion() }
    let element = weight.bf16 == nil ? MemoryLayout<Float>.stride : MemoryLayout<BF16>.stride
    let base = weight.bf16.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(weight.data)
    let bytes = min(idlePrefetchBytes, rows.count * weight.columns * element)
    return IdleRegion(base + rows.lowerBound * weight.columns * element, byteCount: bytes)
}

/// The part of each thread's share of a streaming matmul that a thread done early may take over, in percent
/// (`WorkerPool.parallelForSharingTails`; `SPECSERVE_SHARED_TAIL` overrides, 0 turns it off). The two halves of a
/// matmul finish a few µs apart at random, and perf showed the caller spinning at the joins for 13–16 % of a
/// run's samples. Measured on the shipped target, toggled in one process against 0, medians of 21 pairs, six runs
/// each: 6 % decode 0.96–1.02× (median 0.98×), 5-row verify 0.93–1.01× (median 0.97×); 12 % 0.93–1.04× / 0.93–1.03×; 25 % and
/// more within noise or slower (each piece is a separate kernel call that starts its prefetching afresh).
let sharedTailPercent = ProcessInfo.processInfo.environment["SPECSERVE_SHARED_TAIL"].flatMap(Int.init) ?? 6

typealias Vec = SIMD16<Float>
let vecWidth = 16

@inline(__always)
private func load(_ p: UnsafePointer<Float>) -> Vec {
    UnsafeRawPointer(p).loadUnaligned(as: Vec.self)
}

/// How a weight element is read: F32 as it is, BF16 widened to the F32 it stands for (exact: its bits are the
/// upper half of that F32). The kernels are generic over it and specialised for each.
protocol StreamedWeight {
    static func vector(_ p: UnsafePointer<Self>) -> Vec
    static func scalar(_ p: UnsafePointer<Self>, _ i: Int) -> Float
}

extension Float: StreamedWeight {
    @inline(__always) static func vector(_ p: UnsafePointer<Float>) -> Vec { load(p) }
    @inline(__always) static func scalar(_ p: UnsafePointer<Float>, _ i: Int) -> Float { p[i] }
}

extension BF16: StreamedWeight {
    @inline(__always) static func vector(_ p: UnsafePointer<BF16>) -> Vec { specserve_widen_bf16(p) }
    @inline(__always) static func scalar(_ p: UnsafePointer<BF16>, _ i: Int) -> Float { p[i].float }
}

/// A read prefetch of the cache line at `p` (for code outside this file, which alone sees the C shim).
@inline(__always)
func prefetchLine(_ p: UnsafeRawPointer) { specserve_prefetch(p) }

/// Prefetches the `rows` weight rows × 16 elements an iteration of a kernel reads, `ahead` elements on: one
/// request per cache line.
@inline(__always)
private func prefetchTile<E: StreamedWeight>(_ p: UnsafePointer<E>, rows: Int) {
    let perLine = 64 / MemoryLayout<E>.stride
    var e = 0
    while e < rows * vecWidth { specserve_prefetch(p + e); e += perLine }
}

/// The scalar part of K beyond the last whole vector, added after the horizontal sum (same order for all M).
@inline(__always)
private func tail<E: StreamedWeight>(_ a: UnsafePointer<Float>, _ w: UnsafePointer<E>, from start: Int, to k: Int) -> Float {
    var s: Float = 0
    var i = start
    while i < k { s = s.addingProduct(a[i], E.scalar(w, i)); i += 1 }
    return s
}

/// Outputs `outputs` of C for all M rows: for each tile of weight rows (read from memory once, then from L1),
/// every block of activation rows. A block is computed in one pass over the tile, and one pass is what overlaps
/// the weight stream with the FMAs: a second pass over a tile already in L1 adds its whole compute time to the
/// step (the memory sits idle meanwhile). So blocks are as tall as the 32 vector registers allow:
///  - up to 6 rows: tiles of 4 weight rows, `kernel4xH` (4 × 6 = 24 accumulators + 4 weight vectors + 1 row);
///  - 7 rows: tiles of 3 weight rows, `kernel3x7` (3 × 7 = 21 accumulators: fewer loads and loop instructions per
///    FMA than 2-row tiles; in one process, toggled, five runs: 7-row matmul 2–6 % faster, the step 1–4 % in four
///    of them; at 8 rows the two were even, so 8 rows stay on 2-row tiles);
///  - 8 rows and more: tiles of 2 weight rows, `kernel2xH`, blocks of at most 12 rows (2 × 12 accumulators),
///    balanced heights when there are several (13 → 7 + 6, 16 → 8 + 8).
/// Measured against tiles of 4 with blocks of ≤ 6, interleaved, all weights of the shipped target over one row:
/// 7 rows 1.56× → 1.29×, 8 rows 1.69× → 1.42×, 12 rows 2.14× → 1.84×; at 5–6 rows the two are within noise.
/// Each kernel is specialised per block height so a short block computes only its own rows.
@inline(__always)
private func streamingMatmul<E: StreamedWeight>(
    _ a: UnsafePointer<Float>, m: Int, k: Int, weight: UnsafePointer<E>, outputs: Range<Int>,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let kv = k - k % vecWidth
    let wide = m > maxBlockHeight
    let tile = m == 7 ? 3 : wide ? 2 : 4, most = wide ? maxWideBlockHeight : maxBlockHeight
    let blocks = (m + most - 1) / most
    var n = outputs.lowerBound
    while n + tile <= outputs.upperBound {
        let w = weight + n * k
        if m == 7 {
            kernel3x7(a, k: k, kv: kv, w: w, c: c + n, ldc: ldc)
            n += tile
            continue
        }
        var r = 0
        for b in 0..<blocks {
            // Balanced heights: block b ends at ⌈m·(b+1)/blocks⌉.
            let end = (m * (b + 1) + blocks - 1) / blocks
            let ar = a + r * k, cr = c + r * ldc + n
            // The block height as a type: each call runs a kernel specialised for that many rows.
            if wide {
                // Balanced blocks beyond 6 rows are 6 to 12 rows high (13 → 7 + 6, 25 → 9 + 8 + 8).
                switch end - r {
                case 6: kernel2xH(SixRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 7: kernel2xH(SevenRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 8: kernel2xH(EightRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 9: kernel2xH(NineRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 10: kernel2xH(TenRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 11: kernel2xH(ElevenRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 12: kernel2xH(TwelveRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                default: preconditionFailure("a block of \(end - r) rows on 2-row tiles")
                }
            } else {
                switch end - r {
                case 1: kernel4xH(OneRow.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 2: kernel4xH(TwoRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 3: kernel4xH(ThreeRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 4: kernel4xH(FourRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                case 5: kernel4xH(FiveRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                default: kernel4xH(SixRows.self, ar, k: k, kv: kv, w: w, c: cr, ldc: ldc)
                }
            }
            r = end
        }
        n += tile
    }
    while n < outputs.upperBound {
        let w = weight + n * k
        for r in 0..<m {
            kernel1x1(a + r * k, k: k, kv: kv, w: w, c: c + r * ldc + n)
        }
        n += 1
    }
}

/// The most activation rows one pass over a 4-row weight tile computes.
let maxBlockHeight = 6
/// The most activation rows one pass over a 2-row weight tile computes.
let maxWideBlockHeight = 12

/// A block height of the kernel as a type, so each height is its own specialised function with the row count a
/// constant. (A literal `rows` argument to an `@inline(__always)` function was not enough: the compiler kept one
/// out-of-line kernel that tested the row count inside its loop and reloaded the row pointers from the stack.)
private protocol BlockHeight { static var rows: Int { get } }
private enum OneRow: BlockHeight { static var rows: Int { 1 } }
private enum TwoRows: BlockHeight { static var rows: Int { 2 } }
private enum ThreeRows: BlockHeight { static var rows: Int { 3 } }
private enum FourRows: BlockHeight { static var rows: Int { 4 } }
private enum FiveRows: BlockHeight { static var rows: Int { 5 } }
private enum SixRows: BlockHeight { static var rows: Int { 6 } }
private enum SevenRows: BlockHeight { static var rows: Int { 7 } }
private enum EightRows: BlockHeight { static var rows: Int { 8 } }
private enum NineRows: BlockHeight { static var rows: Int { 9 } }
private enum TenRows: BlockHeight { static var rows: Int { 10 } }
private enum ElevenRows: BlockHeight { static var rows: Int { 11 } }
private enum TwelveRows: BlockHeight { static var rows: Int { 12 } }

/// Four weight rows × `H.rows` (1...6) activation rows, one 16-lane accumulator per output; the unused rows'
/// loads and FMAs fold away.
@inline(__always)
private func kernel4xH<H: BlockHeight, E: StreamedWeight>(
    _: H.Type, _ a: UnsafePointer<Float>, k: Int, kv: Int, w: UnsafePointer<E>,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let rows = H.rows
    let a0 = a, a1 = a + min(1, rows - 1) * k, a2 = a + min(2, rows - 1) * k, a3 = a + min(3, rows - 1) * k
    let a4 = a + min(4, rows - 1) * k, a5 = a + min(5, rows - 1) * k
    let w0 = w, w1 = w + k, w2 = w + 2 * k, w3 = w + 3 * k
    var c00 = Vec(), c01 = Vec(), c02 = Vec(), c03 = Vec()
    var c10 = Vec(), c11 = Vec(), c12 = Vec(), c13 = Vec()
    var c20 = Vec(), c21 = Vec(), c22 = Vec(), c23 = Vec()
    var c30 = Vec(), c31 = Vec(), c32 = Vec(), c33 = Vec()
    var c40 = Vec(), c41 = Vec(), c42 = Vec(), c43 = Vec()
    var c50 = Vec(), c51 = Vec(), c52 = Vec(), c53 = Vec()
    // The tile after next (4k elements, starting 8k elements on) is prefetched, one request per line an iteration
    // reads (4 lines of F32, 2 of BF16), so it is in cache by the time it is needed: with several rows the FMAs
    // would otherwise hide memory requests. Two tiles ahead rather than one: at k = 384 one F32 tile is 6 KB, less
    // than the bytes in flight during one DRAM latency when the memory is fast.
    let next = w + 8 * k
    var p = 0
    while p < kv {
        prefetchTile(next + 4 * p, rows: 4)
        let x0 = E.vector(w0 + p), x1 = E.vector(w1 + p), x2 = E.vector(w2 + p), x3 = E.vector(w3 + p)
        multiplyAdd4(load(a0 + p), x0, x1, x2, x3, &c00, &c01, &c02, &c03)
        if rows > 1 { multiplyAdd4(load(a1 + p), x0, x1, x2, x3, &c10, &c11, &c12, &c13) }
        if rows > 2 { multiplyAdd4(load(a2 + p), x0, x1, x2, x3, &c20, &c21, &c22, &c23) }
        if rows > 3 { multiplyAdd4(load(a3 + p), x0, x1, x2, x3, &c30, &c31, &c32, &c33) }
        if rows > 4 { multiplyAdd4(load(a4 + p), x0, x1, x2, x3, &c40, &c41, &c42, &c43) }
        if rows > 5 { multiplyAdd4(load(a5 + p), x0, x1, x2, x3, &c50, &c51, &c52, &c53) }
        p &+= vecWidth
    }
    store4(c, a0, k: k, kv: kv, w: w, c00, c01, c02, c03)
    if rows > 1 { store4(c + ldc, a1, k: k, kv: kv, w: w, c10, c11, c12, c13) }
    if rows > 2 { store4(c + 2 * ldc, a2, k: k, kv: kv, w: w, c20, c21, c22, c23) }
    if rows > 3 { store4(c + 3 * ldc, a3, k: k, kv: kv, w: w, c30, c31, c32, c33) }
    if rows > 4 { store4(c + 4 * ldc, a4, k: k, kv: kv, w: w, c40, c41, c42, c43) }
    if rows > 5 { store4(c + 5 * ldc, a5, k: k, kv: kv, w: w, c50, c51, c52, c53) }
}

/// Two weight rows × `H.rows` activation rows (the blocks of batches beyond 6 rows: 6...12), 24 accumulators at
/// most, so 8 rows still pass over each weight tile once (a 4-row tile would need 32 accumulators). Same
/// arithmetic per output as `kernel4xH`.
@inline(__always)
private func kernel2xH<H: BlockHeight, E: StreamedWeight>(
    _: H.Type, _ a: UnsafePointer<Float>, k: Int, kv: Int, w: UnsafePointer<E>,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let rows = H.rows
    precondition(rows >= 6, "2-row tiles take blocks of 6 to 12 rows")
    let a0 = a
    let a1 = a + min(1, rows - 1) * k
    let a2 = a + min(2, rows - 1) * k
    let a3 = a + min(3, rows - 1) * k
    let a4 = a + min(4, rows - 1) * k
    let a5 = a + min(5, rows - 1) * k
    let a6 = a + min(6, rows - 1) * k
    let a7 = a + min(7, rows - 1) * k
    let a8 = a + min(8, rows - 1) * k
    let a9 = a + min(9, rows - 1) * k
    let a10 = a + min(10, rows - 1) * k
    let a11 = a + min(11, rows - 1) * k
    let w0 = w, w1 = w + k
    var c0_0 = Vec(), c0_1 = Vec()
    var c1_0 = Vec(), c1_1 = Vec()
    var c2_0 = Vec(), c2_1 = Vec()
    var c3_0 = Vec(), c3_1 = Vec()
    var c4_0 = Vec(), c4_1 = Vec()
    var c5_0 = Vec(), c5_1 = Vec()
    var c6_0 = Vec(), c6_1 = Vec()
    var c7_0 = Vec(), c7_1 = Vec()
    var c8_0 = Vec(), c8_1 = Vec()
    var c9_0 = Vec(), c9_1 = Vec()
    var c10_0 = Vec(), c10_1 = Vec()
    var c11_0 = Vec(), c11_1 = Vec()
    // Prefetched as in `kernel4xH`: the same distance (8k elements, four 2-row tiles ahead), one request per line
    // an iteration reads.
    let next = w + 8 * k
    var p = 0
    while p < kv {
        prefetchTile(next + 2 * p, rows: 2)
        let x0 = E.vector(w0 + p), x1 = E.vector(w1 + p)
        let y0 = load(a0 + p)
        c0_0 = c0_0.addingProduct(y0, x0); c0_1 = c0_1.addingProduct(y0, x1)
        if rows > 1 { let y = load(a1 + p); c1_0 = c1_0.addingProduct(y, x0); c1_1 = c1_1.addingProduct(y, x1) }
        if rows > 2 { let y = load(a2 + p); c2_0 = c2_0.addingProduct(y, x0); c2_1 = c2_1.addingProduct(y, x1) }
        if rows > 3 { let y = load(a3 + p); c3_0 = c3_0.addingProduct(y, x0); c3_1 = c3_1.addingProduct(y, x1) }
        if rows > 4 { let y = load(a4 + p); c4_0 = c4_0.addingProduct(y, x0); c4_1 = c4_1.addingProduct(y, x1) }
        if rows > 5 { let y = load(a5 + p); c5_0 = c5_0.addingProduct(y, x0); c5_1 = c5_1.addingProduct(y, x1) }
        if rows > 6 { let y = load(a6 + p); c6_0 = c6_0.addingProduct(y, x0); c6_1 = c6_1.addingProduct(y, x1) }
        if rows > 7 { let y = load(a7 + p); c7_0 = c7_0.addingProduct(y, x0); c7_1 = c7_1.addingProduct(y, x1) }
        if rows > 8 { let y = load(a8 + p); c8_0 = c8_0.addingProduct(y, x0); c8_1 = c8_1.addingProduct(y, x1) }
        if rows > 9 { let y = load(a9 + p); c9_0 = c9_0.addingProduct(y, x0); c9_1 = c9_1.addingProduct(y, x1) }
        if rows > 10 { let y = load(a10 + p); c10_0 = c10_0.addingProduct(y, x0); c10_1 = c10_1.addingProduct(y, x1) }
        if rows > 11 { let y = load(a11 + p); c11_0 = c11_0.addingProduct(y, x0); c11_1 = c11_1.addingProduct(y, x1) }
        p &+= vecWidth
    }
    // Rows in pairs (blocks are 6...12 high, so the first three pairs are always whole), an odd last row alone.
    store2x2(c, ldc: ldc, a0, a1, k: k, kv: kv, w: w, c0_0, c0_1, c1_0, c1_1)
    store2x2(c + 2 * ldc, ldc: ldc, a2, a3, k: k, kv: kv, w: w, c2_0, c2_1, c3_0, c3_1)
    store2x2(c + 4 * ldc, ldc: ldc, a4, a5, k: k, kv: kv, w: w, c4_0, c4_1, c5_0, c5_1)
    if rows == 7 { store2(c + 6 * ldc, a6, k: k, kv: kv, w: w, c6_0, c6_1) }
    if rows > 7 { store2x2(c + 6 * ldc, ldc: ldc, a6, a7, k: k, kv: kv, w: w, c6_0, c6_1, c7_0, c7_1) }
    if rows == 9 { store2(c + 8 * ldc, a8, k: k, kv: kv, w: w, c8_0, c8_1) }
    if rows > 9 { store2x2(c + 8 * ldc, ldc: ldc, a8, a9, k: k, kv: kv, w: w, c8_0, c8_1, c9_0, c9_1) }
    if rows == 11 { store2(c + 10 * ldc, a10, k: k, kv: kv, w: w, c10_0, c10_1) }
    if rows > 11 { store2x2(c + 10 * ldc, ldc: ldc, a10, a11, k: k, kv: kv, w: w, c10_0, c10_1, c11_0, c11_1) }
}

/// Three weight rows × 7 activation rows (a verify of 6 drafts): 21 accumulators, 3 weight vectors and 1 row. Same
/// arithmetic per output as `kernel4xH`. Prefetched as the others: two tiles (6k elements) ahead, one request per
/// line an iteration reads.
@inline(__always)
private func kernel3x7<E: StreamedWeight>(
    _ a: UnsafePointer<Float>, k: Int, kv: Int, w: UnsafePointer<E>, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let a0 = a, a1 = a + k, a2 = a + 2 * k, a3 = a + 3 * k, a4 = a + 4 * k, a5 = a + 5 * k, a6 = a + 6 * k
    let w0 = w, w1 = w + k, w2 = w + 2 * k
    var c00 = Vec(), c01 = Vec(), c02 = Vec(), c10 = Vec(), c11 = Vec(), c12 = Vec()
    var c20 = Vec(), c21 = Vec(), c22 = Vec(), c30 = Vec(), c31 = Vec(), c32 = Vec()
    var c40 = Vec(), c41 = Vec(), c42 = Vec(), c50 = Vec(), c51 = Vec(), c52 = Vec()
    var c60 = Vec(), c61 = Vec(), c62 = Vec()
    let next = w + 6 * k
    var p = 0
    while p < kv {
        prefetchTile(next + 3 * p, rows: 3)
        let x0 = E.vector(w0 + p), x1 = E.vector(w1 + p), x2 = E.vector(w2 + p)
        multiplyAdd3(load(a0 + p), x0, x1, x2, &c00, &c01, &c02)
        multiplyAdd3(load(a1 + p), x0, x1, x2, &c10, &c11, &c12)
        multiplyAdd3(load(a2 + p), x0, x1, x2, &c20, &c21, &c22)
        multiplyAdd3(load(a3 + p), x0, x1, x2, &c30, &c31, &c32)
        multiplyAdd3(load(a4 + p), x0, x1, x2, &c40, &c41, &c42)
        multiplyAdd3(load(a5 + p), x0, x1, x2, &c50, &c51, &c52)
        multiplyAdd3(load(a6 + p), x0, x1, x2, &c60, &c61, &c62)
        p &+= vecWidth
    }
    store3(c, a0, k: k, kv: kv, w: w, c00, c01, c02)
    store3(c + ldc, a1, k: k, kv: kv, w: w, c10, c11, c12)
    store3(c + 2 * ldc, a2, k: k, kv: kv, w: w, c20, c21, c22)
    store3(c + 3 * ldc, a3, k: k, kv: kv, w: w, c30, c31, c32)
    store3(c + 4 * ldc, a4, k: k, kv: kv, w: w, c40, c41, c42)
    store3(c + 5 * ldc, a5, k: k, kv: kv, w: w, c50, c51, c52)
    store3(c + 6 * ldc, a6, k: k, kv: kv, w: w, c60, c61, c62)
}

/// One activation row's FMAs against a tile's 3 weight vectors.
@inline(__always)
private func multiplyAdd3(_ y: Vec, _ x0: Vec, _ x1: Vec, _ x2: Vec, _ c0: inout Vec, _ c1: inout Vec, _ c2: inout Vec) {
    c0 = c0.addingProduct(y, x0); c1 = c1.addingProduct(y, x1); c2 = c2.addingProduct(y, x2)
}

/// Finishes one row's 3 outputs, as `store4` does (the fourth sum is computed and dropped).
@inline(__always)
private func store3<E: StreamedWeight>(
    _ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, k: Int, kv: Int, w: UnsafePointer<E>,
    _ v0: Vec, _ v1: Vec, _ v2: Vec
) {
    let s = horizontalSums(v0, v1, v2, v2)
    out[0] = s[0] + tail(a, w, from: kv, to: k)
    out[1] = s[1] + tail(a, w + k, from: kv, to: k)
    out[2] = s[2] + tail(a, w + 2 * k, from: kv, to: k)
}

/// One activation row's FMAs against a tile's 4 weight vectors, each into its own accumulator.
@inline(__always)
private func multiplyAdd4(_ y: Vec, _ x0: Vec, _ x1: Vec, _ x2: Vec, _ x3: Vec,
                          _ c0: inout Vec, _ c1: inout Vec, _ c2: inout Vec, _ c3: inout Vec) {
    c0 = c0.addingProduct(y, x0); c1 = c1.addingProduct(y, x1)
    c2 = c2.addingProduct(y, x2); c3 = c3.addingProduct(y, x3)
}

/// Finishes one row's 4 outputs: horizontal sums (the four trees at once, `horizontalSums`), then the scalar tail of K.
@inline(__always)
private func store4<E: StreamedWeight>(
    _ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, k: Int, kv: Int, w: UnsafePointer<E>,
    _ v0: Vec, _ v1: Vec, _ v2: Vec, _ v3: Vec
) {
    let s = horizontalSums(v0, v1, v2, v3)
    out[0] = s[0] + tail(a, w, from: kv, to: k)
    out[1] = s[1] + tail(a, w + k, from: kv, to: k)
    out[2] = s[2] + tail(a, w + 2 * k, from: kv, to: k)
    out[3] = s[3] + tail(a, w + 3 * k, from: kv, to: k)
}

/// Finishes two rows' 2 outputs each (`c` and `c + ldc`), as `store4` does.
@inline(__always)
private func store2x2<E: StreamedWeight>(
    _ out: UnsafeMutablePointer<Float>, ldc: Int, _ a0: UnsafePointer<Float>, _ a1: UnsafePointer<Float>, k: Int,
    kv: Int, w: UnsafePointer<E>, _ v00: Vec, _ v01: Vec, _ v10: Vec, _ v11: Vec
) {
    let s = horizontalSums(v00, v01, v10, v11)
    out[0] = s[0] + tail(a0, w, from: kv, to: k)
    out[1] = s[1] + tail(a0, w + k, from: kv, to: k)
    out[ldc] = s[2] + tail(a1, w, from: kv, to: k)
    out[ldc + 1] = s[3] + tail(a1, w + k, from: kv, to: k)
}

/// Finishes one row's 2 outputs (the last row of an odd block).
@inline(__always)
private func store2<E: StreamedWeight>(
    _ out: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, k: Int, kv: Int, w: UnsafePointer<E>,
    _ v0: Vec, _ v1: Vec
) {
    out[0] = horizontalSum(v0) + tail(a, w, from: kv, to: k)
    out[1] = horizontalSum(v1) + tail(a, w + k, from: kv, to: k)
}

@inline(__always)
private func kernel1x1<E: StreamedWeight>(
    _ a: UnsafePointer<Float>, k: Int, kv: Int, w: UnsafePointer<E>, c: UnsafeMutablePointer<Float>
) {
    var acc = Vec()
    var p = 0
    while p < kv { acc = acc.addingProduct(load(a + p), E.vector(w + p)); p &+= vecWidth }
    c[0] = horizontalSum(acc) + tail(a, w, from: kv, to: k)
}

/// The lanes of a vector summed as a tree (halves, quarters, …): a few shuffles instead of 15 dependent adds,
/// and one fixed order for every output.
@inline(__always)
func horizontalSum(_ v: SIMD16<Float>) -> Float {
    let h8 = v.lowHalf + v.highHalf
    let h4 = h8.lowHalf + h8.highHalf
    let h2 = h4.lowHalf + h4.highHalf
    return h2[0] + h2[1]
}

/// `horizontalSum` of four vectors at once, bit for bit (`specserve_sum4`: shared shuffles, 5 vector adds instead of
/// 16). The streaming matmul finishes its tiles with it.
@inline(__always)
func horizontalSums(_ a: Vec, _ b: Vec, _ c: Vec, _ d: Vec) -> SIMD4<Float> {
    specserve_sum4(a, b, c, d)
}

/// The roofline's measuring stick: reads every byte the streaming matmul reads of `tensors` once (a BF16 copy
/// where there is one), each thread streaming its share of each tensor as the streaming matmul splits it, with the
/// same prefetching. Returns a sum so nothing is
/// optimised away. Decode can be no faster than this on the same machine.
@discardableResult
public func streamAll(_ tensors: [Tensor], pool: WorkerPool) -> Float {
    var partial = [Float](repeating: 0, count: pool.threadCount)
    partial.withUnsafeMutableBufferPointer { sums in
        let sums = sums
        pool.run { worker in
            var a = Vec(), b = Vec(), c = Vec(), d = Vec()
            for t in tensors {
                // The bytes as floats (a BF16 copy read 4 bytes at a time: only the count of bytes matters here).
                let data = t.bf16.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) } ?? UnsafePointer(t.data)
                let count = t.streamedByteCount / MemoryLayout<Float>.stride
                let lo = count * worker / pool.threadCount / 64 * 64
                let hi = worker == pool.threadCount - 1 ? count : count * (worker + 1) / pool.threadCount / 64 * 64
                var i = lo
                while i + 64 <= hi {
                    specserve_prefetch(data + i + 1024)
                    specserve_prefetch(data + i + 1040)
                    specserve_prefetch(data + i + 1056)
                    specserve_prefetch(data + i + 1072)
                    a += load(data + i); b += load(data + i + 16)
                    c += load(data + i + 32); d += load(data + i + 48)
                    i += 64
                }
                while i < hi { a[0] += data[i]; i += 1 }
            }
            sums[worker] = horizontalSum(a + b + c + d)
        }
    }
    return partial.reduce(0, +)
}
