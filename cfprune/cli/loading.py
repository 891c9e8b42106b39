"""Loading what the arguments name: the model, the interactions (--dataset/--ratings, split by
the split options, or --train/--test files), raw-id files; writing a split."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from ..errors import DataError
from .checks import has_data


def load_model_arg(args):
    """The FactorModel of the MODEL file or the --user-factors/--item-factors pair."""
    from ..models import FactorModel, load_npy_pair
    if args.model:
        return FactorModel.load(args.model)
    return load_npy_pair(args.user_factors, args.item_factors)


def load_data(args):
    """Interactions from --dataset or --ratings, made implicit with the threshold and filters."""
    from ..datasets import load_interactions, load_movielens
    threshold = None if args.threshold < 0 else args.threshold
    if args.dataset:
        raw = load_movielens(args.dataset)
    else:
        raw = load_interactions(args.ratings, member=args.member, sep=args.sep,
                                columns=args.columns, header=False if args.no_header else None,
                                on_bad_lines="skip" if args.skip_bad_lines else "error",
                                id_type=args.id_type)
        info = getattr(raw, "load_info", None)
        if info:
            print(f"read {args.ratings}: {json.dumps(info, default=str)}", file=sys.stderr)
    return raw.implicit(threshold, args.min_user, args.min_item)


def split_data(args):
    """(train, test) Interactions of --dataset/--ratings by the split options (also written to
    --save-split). For strong generalisation, train holds the training users and the held-out
    users' fold-in part (the items a scored user is known to have), test the held-out users'
    test part; `cfprune train` folds those users in itself."""
    from .. import splits
    data = load_data(args)
    if args.split == "random":
        train, test = splits.random_split(data, test_fraction=args.test_fraction, seed=args.seed)
    elif args.split == "temporal":
        train, test = splits.temporal_split(data, k=args.leave_last)
    else:
        strong = strong_split(args, data)
        train, test = strong.train_with_foldin(), strong.test
    if args.save_split:
        save_split(args.save_split, train, test)
    return train, test


def strong_split(args, data):
    """The strong-generalisation split: --test-fraction of the users held out, and of each
    held-out user's interactions --test-fraction to predict (the rest is the fold-in part)."""
    from .. import splits
    return splits.strong_generalization_split(data, heldout_fraction=args.test_fraction,
                                              test_fraction=args.test_fraction, seed=args.seed)


def load_csr(path, what):
    from ..io import read_sparse
    return read_sparse(path, f"{what} file")


def training_part(args):
    """The training interactions: the --train file (CSR), the training part of --dataset/
    --ratings (Interactions, with its id maps), or None."""
    if args.train:
        return load_csr(args.train, "--train")
    if has_data(args):
        return split_data(args)[0]
    return None


def save_split(directory, train, test):
    """Write train/test as scipy.sparse .npz files (atomically) for --train/--test."""
    import io as _io

    import scipy.sparse as sp

    from ..io import atomic_write, ensure_dir
    ensure_dir(directory)
    for name, part in (("train", train), ("test", test)):
        buffer = _io.BytesIO()
        sp.save_npz(buffer, part.matrix.tocsr())
        atomic_write(os.path.join(directory, f"{name}.npz"), lambda f: f.write(buffer.getvalue()))
    print(f"wrote {directory}/train.npz and {directory}/test.npz", file=sys.stderr)


def load_ids(path, what):
    """Raw ids from a .npy array (no pickle) or a text file with one id per line (integers when
    every line is one, so they match the ids of a ratings file), or None."""
    if path is None:
        return None
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        with open(path, encoding="utf-8") as f:
            ids = [line.strip() for line in f if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{what} file {path} is not readable: {e}") from None
    try:
        return np.array([int(i) for i in ids], np.int64)
    except ValueError:
        return np.array(ids)
