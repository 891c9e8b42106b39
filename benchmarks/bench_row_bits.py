"""Per-row item bits, measured before building them: do popular rows at more bits than the tail
beat the search space's pipelines at the same bytes?

The model and its split come from the CLI (a trained ALS model and ``--save-split``), e.g. on the
derived ML-1M archive (``ml-1m-no-timestamps``, ratings >= 4; never the official ml-1m):

    cfprune train --ratings ml-1m-no-timestamps.zip --member ml-1m-no-timestamps/ratings.dat \\
        --columns user,item,rating --no-header --regularization 100 --seed 0 \\
        --out als.npz --save-split split
    python benchmarks/bench_row_bits.py als.npz split

Items are ranked by reach (in how many top-20 lists of the training users they appear,
:func:`cfprune.compression.rows.reach_counts`). A *mixed* table gives the top share of rows one
storage and the rest another (or drops them: zero rows); each group is quantised with its own
per-dimension scales by cfprune's own compressors, decoded and reassembled as a float32 item
table, so its ranking is the one a mixed-precision table would serve. Its bytes are the groups'
tables plus a uint16 row map. Every row is evaluated on the test part (recall@20 and
coverage@20 as shares of the float32 model's), beside pipelines of the search space, and a mixed
row is listed as winning when no search-space row is at most as large with both shares at least
as high.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cfprune  # noqa: E402
from cfprune.compression.rows import reach_counts  # noqa: E402

SHARES = (0.05, 0.1, 0.2, 0.3, 0.5)
SPLITS = (("int8:axis=dim", "int4:axis=dim"), ("int8:axis=dim", "int2:axis=dim"),
          ("int4:axis=dim", "int2:axis=dim"), ("int8:axis=dim", None), ("int4:axis=dim", None))
SEARCH_SPACE = ("int8:axis=dim", "int4:axis=dim", "int2:axis=dim",
                "prune-rows:by=reach,k=20|int4:axis=dim", "prune-rows:by=reach,k=50|int4:axis=dim",
                "prune-rows:by=reach|int8:axis=dim", "prune-rows:by=reach,k=50|int2:axis=dim",
                "lowrank:rank=48|int4:axis=dim",
                "prune-rows:by=reach,k=50|lowrank:rank=48|int4:axis=dim",
                "pq:m=16,nbits=4", "pq:m=32,nbits=4", "pq:m=16")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a float32 model file (cfprune train --out)")
    parser.add_argument("split", type=Path, help="its --save-split directory")
    parser.add_argument("--recall", type=float, default=0.97)
    parser.add_argument("--coverage", type=float, default=0.90)
    args = parser.parse_args()
    base = cfprune.FactorModel.load(args.model)
    train = sp.load_npz(args.split / "train.npz")
    test = sp.load_npz(args.split / "test.npz")
    users, items = base.users.decode(), base.items.decode()

    def shares(model):
        m = cfprune.evaluate(model, train, test, ks=(20,), show_progress=False).metrics
        return m["recall@20"] / ref["recall@20"], m["coverage@20"] / ref["coverage@20"]

    ref = cfprune.evaluate(base, train, test, ks=(20,), show_progress=False).metrics
    rank = np.argsort(-reach_counts(base, train, 20), kind="stable")

    def group(rows, spec):
        if spec is None:
            return np.zeros((rows.size, items.shape[1]), np.float32), 0
        part = cfprune.compress(cfprune.FactorModel(users, items[rows]), spec)
        return part.items.decode(), part.items.nbytes

    rows = []
    for share in SHARES:
        top = int(round(share * items.shape[0]))
        for high, low in SPLITS:
            mixed = np.zeros_like(items)
            mixed[rank[:top]], high_bytes = group(rank[:top], high)
            mixed[rank[top:]], low_bytes = group(rank[top:], low)
            name = (f"mixed top {share:.0%} {high.split(':')[0]} / rest "
                    f"{low.split(':')[0] if low else 'dropped'}")
            rows.append((high_bytes + low_bytes + 2 * items.shape[0], name,
                         *shares(cfprune.FactorModel(users, mixed))))
    for spec in SEARCH_SPACE:
        model = cfprune.compress(base, spec, train)
        rows.append((model.items.nbytes, spec, *shares(model)))
    print(f"float32: recall@20 {ref['recall@20']:.4f} coverage@20 {ref['coverage@20']:.4f}; "
          f"items {items.nbytes:,} B")
    print(f"{'item bytes':>10} {'ratio':>6} {'recall':>7} {'cover':>7}  candidate")
    for nbytes, name, recall, coverage in sorted(rows):
        print(f"{nbytes:10,} {items.nbytes / nbytes:6.1f} {100 * recall:6.1f}% "
              f"{100 * coverage:6.1f}%  {name}")
    space = [r for r in rows if not r[1].startswith("mixed")]
    mixed = [r for r in rows if r[1].startswith("mixed")]
    wins = [r for r in mixed
            if not any(s[0] <= r[0] and s[2] >= r[2] and s[3] >= r[3] for s in space)]
    print(f"mixed rows no search-space row dominates: {len(wins)} of {len(mixed)}")

    def smallest(candidates):
        meeting = [r for r in candidates if r[2] >= args.recall and r[3] >= args.coverage]
        return min(meeting) if meeting else None
    for label, best in (("mixed", smallest(mixed)), ("search space", smallest(space))):
        text = "none" if best is None else \
            f"{best[1]} ({best[0]:,} B, {items.nbytes / best[0]:.1f}x)"
        print(f"smallest {label} row meeting recall >= {args.recall:.0%} and coverage >= "
              f"{args.coverage:.0%}: {text}")


if __name__ == "__main__":
    main()
