"""Raw ids on the command line: the data's rows matched to the model's by id, typed user ids to
model rows, and model rows back to the ids shown."""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def model_rows(model_ids, data_ids, n_rows, what):
    """int64 [len(data_ids)]: the model row of each row of the data (-1 where the model has no
    such id), or None when the rows already coincide. A model without id maps must have the
    data's rows."""
    if model_ids is None or np.array_equal(model_ids, data_ids):
        if len(data_ids) != n_rows:
            raise DataError(f"the model has {n_rows} {what}s but the data has {len(data_ids)}; "
                            f"give the data (and --threshold/--min-user/--min-item) it was "
                            f"trained on")
        return None
    index = {key: row for row, key in enumerate(model_ids.tolist())}
    rows = np.fromiter((index.get(key, -1) for key in data_ids.tolist()), np.int64,
                       len(data_ids))
    if not (rows >= 0).any():
        raise DataError(f"no {what} id of the data is among the model's {what} ids (e.g. "
                        f"{model_ids[:1].tolist()} vs {data_ids[:1].tolist()}): the model was "
                        f"not trained on this data")
    return rows


def in_model_rows(model, part):
    """CSR float32 [n_users, n_items] in the model's rows and columns: a --train/--test CSR
    (already in them) as it is, or an Interactions matched to the model's id maps by raw id
    (pairs whose user or item the model lacks are dropped)."""
    import scipy.sparse as sp
    if part is None or sp.issparse(part):
        return part
    users = model_rows(model.user_ids, part.user_ids, model.n_users, "user")
    items = model_rows(model.item_ids, part.item_ids, model.n_items, "item")
    if users is None and items is None:
        return part.matrix
    coo = part.matrix.tocoo()
    r = coo.row.astype(np.int64) if users is None else users[coo.row]
    c = coo.col.astype(np.int64) if items is None else items[coo.col]
    keep = (r >= 0) & (c >= 0)
    return sp.csr_matrix((coo.data[keep], (r[keep], c[keep])),
                         shape=(model.n_users, model.n_items))


def id_maps(model, train):
    """(user raw ids or None, item raw ids or None) of the model's rows: the model's stored id
    maps, else those of the data (whose rows the model then has), else None (ids are rows)."""
    has_ids = train is not None and hasattr(train, "user_ids")
    users = model.user_ids if model.user_ids is not None else \
        (train.user_ids if has_ids else None)
    items = model.item_ids if model.item_ids is not None else \
        (train.item_ids if has_ids else None)
    return users, items


def parse_ids(tokens, raw_ids, n_rows, internal):
    """int64 [n]: model rows of the user ids typed on the command line. Raw ids are looked up
    in ``raw_ids`` (the model's or the data's id map); with ``internal`` or no id map they are
    row indices. DataError naming the first id that is not there."""
    if internal or raw_ids is None:
        rows = []
        for token in tokens:
            try:
                row = int(token)
            except ValueError:
                raise DataError(f"--users {token}: row indices are integers") from None
            if not 0 <= row < n_rows:
                raise DataError(f"--users {token}: the model has {n_rows} users (rows 0.."
                                f"{n_rows - 1})")
            rows.append(row)
        return np.asarray(rows, np.int64)
    numeric = raw_ids.dtype.kind in "iu"
    index = {key: row for row, key in enumerate(raw_ids.tolist())}
    rows = []
    for token in tokens:
        try:
            key = int(token) if numeric else str(token)
        except ValueError:
            key = None
        if key not in index:
            first, last = raw_ids[[0, -1]].tolist()
            raise DataError(f"user id {token} is not among the {n_rows} users of the model "
                            f"(ids such as {first!r}, {last!r}; --internal-ids takes row "
                            f"indices)")
        rows.append(index[key])
    return np.asarray(rows, np.int64)


def shown_ids(rows, raw_ids):
    """list: the raw id of each row (None for the padding row -1), or the rows themselves."""
    rows = np.asarray(rows)
    if raw_ids is None:
        return [None if r < 0 else int(r) for r in rows.tolist()]
    return [None if r < 0 else v for r, v in zip(rows.tolist(), raw_ids[rows].tolist())]
