"""Item tiles scored in registers: the panel layout and a fused dot-product and threshold kernel.

A tile's float32 rows ``decoded`` [w, d] are laid out as a *panel* (:func:`to_panel`): blocks of
:data:`PANEL_ITEMS` (32) items, each block dimension-major (``panel[b, t, i]`` is coordinate
``t`` of the item ``32 b + i``), so that coordinate ``t`` of a whole block is one or two vector
loads. :func:`block_scores` (a Numba intrinsic emitting LLVM vector IR) scores one block
against :data:`PANEL_USERS` users at once: per coordinate, the block's vectors are loaded once
and each user's coordinate is broadcast into a fused multiply-add, the ``PANEL_USERS x 32``
sums staying in registers (16 vector accumulators) for the whole dot product. The sums are then
compared in registers with each user's k-th best score: the kernel stores the block's scores
and returns a bit per user that has one at least as good (most blocks return 0 once the heaps
have filled, and nothing else is read).

That is the GEMM a BLAS library runs, without writing the score matrix out and reading it back
for the selection: OpenBLAS's sgemm on ``256 x 1024 x 64`` blocks runs at about 104 GFLOP/s per
core here (148 on large square ones), the stores of its result included, and the selection then
reads every score once more.

Widths by the host CPU (:data:`HAS_AVX512`): 16-lane vectors and 8 users with AVX-512F (16 of
its 32 zmm registers hold the sums; 0.80 ns per score of 64 coordinates on one core here, 161
GFLOP/s, against 0.92 with 4 users and 1.23 for OpenBLAS's sgemm), 8 lanes and 2 users
otherwise (8 ymm accumulators, what AVX2's 16 registers hold beside the loads: compiled for
Haswell on the same machine, 1.39 ns per score against 1.62 for OpenBLAS's Haswell sgemm; 3
users spill, 2.01); LLVM legalises the same IR on any x86 CPU. Each score is a float32 dot
product summed in coordinate order with fused multiply-adds: within float32 rounding of the
exact product, like a BLAS one.
"""

import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

PANEL_ITEMS = 32
HAS_AVX512 = bool(binding.get_host_cpu_features().get("avx512f"))
# users scored together by one call of block_scores, and the float32 lanes of its vectors
PANEL_USERS = 8 if HAS_AVX512 else 2
LANES = 16 if HAS_AVX512 else 8


@njit(cache=True, nogil=True)
def to_panel(decoded, n_rows, panel):
    """Lay the rows ``decoded[:n_rows]`` float32 [>= n_rows, d] out in ``panel`` float32 [>=
    ceil(n_rows / 32) * d * 32] (block b, coordinate t, item i at ``(b * d + t) * 32 + i``); the
    items past ``n_rows`` in the last block get zeros."""
    dim = decoded.shape[1]
    n_blocks = (n_rows + PANEL_ITEMS - 1) // PANEL_ITEMS
    for b in range(n_blocks):
        base = b * dim * PANEL_ITEMS
        for i in range(PANEL_ITEMS):
            r = b * PANEL_ITEMS + i
            if r < n_rows:
                for t in range(dim):
                    panel[base + t * PANEL_ITEMS + i] = decoded[r, t]
            else:
                for t in range(dim):
                    panel[base + t * PANEL_ITEMS + i] = np.float32(0.0)


@intrinsic
def block_scores(typingctx, users, users_at, panel, panel_at, dim, thresholds, thresholds_at,
                 out):
    """uint32: bit ``r`` set when user ``r`` of the group has a score >= its threshold.

    The group's users are rows ``users_at / dim + r`` of ``users`` (float32, C order, ``users_at``
    the flat offset of the first), ``r < PANEL_USERS``; the block is ``panel[panel_at:panel_at
    + 32 * dim]`` (:func:`to_panel`); ``thresholds[thresholds_at + r]`` float32 the users' k-th
    best scores. Every score is stored: user ``r``, item ``i`` at ``out[32 r + i]`` (float32
    [>= 32 * PANEL_USERS])."""
    sig = types.uint32(users, types.intp, panel, types.intp, types.intp, thresholds, types.intp,
                       out)

    def codegen(context, builder, signature, args):
        users_a, users_i, panel_a, panel_i, dim_v, thr_a, thr_i, out_a = args

        def data(position, value):
            return context.make_array(signature.args[position])(context, builder, value).data
        users_p = builder.gep(data(0, users_a), [users_i])
        panel_p = builder.gep(data(2, panel_a), [panel_i])
        thr_p = builder.gep(data(5, thr_a), [thr_i])
        out_p = data(7, out_a)
        f32 = ir.FloatType()
        index_t = dim_v.type
        vector_t = ir.VectorType(f32, LANES)
        n_vectors = PANEL_ITEMS // LANES
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector_t, [vector_t] * 3), f"llvm.fma.v{LANES}f32")
        zero = ir.Constant(vector_t, [0.0] * LANES)
        accumulators = [[cgutils.alloca_once_value(builder, zero) for _ in range(n_vectors)]
                        for _ in range(PANEL_USERS)]
        splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)

        def const(value):
            return ir.Constant(index_t, value)

        def splat(scalar):
            one = builder.insert_element(ir.Constant(vector_t, ir.Undefined), scalar,
                                         ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(one, one, splat_mask)

        def vector_at(pointer, offset):
            return builder.bitcast(builder.gep(pointer, [offset]), vector_t.as_pointer())

        with cgutils.for_range(builder, dim_v) as loop:
            column = builder.mul(loop.index, const(PANEL_ITEMS))
            items = [builder.load(vector_at(panel_p, builder.add(column, const(h * LANES))),
                                  align=4) for h in range(n_vectors)]
            for r in range(PANEL_USERS):
                at = builder.add(builder.mul(const(r), dim_v), loop.index)
                coordinate = splat(builder.load(builder.gep(users_p, [at])))
                for h in range(n_vectors):
                    slot = accumulators[r][h]
                    builder.store(builder.call(fma, [coordinate, items[h], builder.load(slot)]),
                                  slot)
        mask = ir.Constant(ir.IntType(32), 0)
        for r in range(PANEL_USERS):
            threshold = splat(builder.load(builder.gep(thr_p, [const(r)])))
            passed = ir.Constant(ir.IntType(LANES), 0)
            for h in range(n_vectors):
                sums = builder.load(accumulators[r][h])
                builder.store(sums, vector_at(out_p, const(r * PANEL_ITEMS + h * LANES)),
                              align=4)
                passed = builder.or_(passed, builder.bitcast(
                    builder.fcmp_ordered(">=", sums, threshold), ir.IntType(LANES)))
            any_passed = builder.icmp_unsigned("!=", passed, ir.Constant(ir.IntType(LANES), 0))
            mask = builder.or_(mask, builder.shl(builder.zext(any_passed, ir.IntType(32)),
                                                 ir.Constant(ir.IntType(32), r)))
        return mask
    return sig, codegen
