"""Vectorised kernels behind :func:`attnreid.evaluation.metrics.evaluate_rank` (private).

Everything here works on one block of query rows of the distance matrix at a time and produces,
exactly, what a per-query loop with a *stable* argsort would produce: gallery items at equal
distance are ranked by gallery index.

**Packed keys.** Each distance becomes one ``uint64``:
``row << (32 + b) | f(value) << b | gallery_index`` with ``b = bit_length(G - 1)`` and ``f`` the
order-preserving map of IEEE ``float32`` bits to ``uint32``. Sorting the integers of each row
(numpy's sort of ``uint64``, several times faster than ``argsort`` of floats, and stability is
irrelevant because keys are unique) orders by value and then by gallery index, which *is* the
stable order. Because the row is the most significant field, the flattened block of sorted keys
is sorted as a whole, so the rank of any (row, gallery item) pair is one ``np.searchsorted`` of
its key -- only the few gallery items with the query's identity need one.

**Other dtypes.** Values that are not all exact ``float32`` values (e.g. genuine ``float64``) are
rounded to ``float32`` for the packed sort; rounding is monotone, so the order is right except
inside runs of equal rounded values. Those runs (found by comparing neighbouring sorted keys) are
re-sorted by (original value, gallery index) -- only the tied entries are touched.
"""

from __future__ import annotations

import numpy as np

_F32_EXACT_INT = 1 << 24  # integers up to this magnitude are exact float32 values


def index_bits(num_gallery: int) -> int:
    """Bits needed to store a gallery index (at least 1)."""
    return max(1, (num_gallery - 1).bit_length())


def max_packed_rows(num_gallery: int) -> int:
    """Largest number of rows one packed-key block can hold (0 if packing is impossible)."""
    free = 32 - index_bits(num_gallery)
    return 1 << free if free > 0 else 0


def to_float32(block: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(block as float32, lossless)``; the conversion is monotone (NaN excluded by the caller).

    ``lossless`` is known without comparing: ``float32``, ``float16``, ``bool`` and integers up to
    ``2**24`` in magnitude convert exactly; anything else may not (and then needs
    :func:`tie_repair`).
    """
    if block.dtype == np.float32:
        return block, True
    if block.dtype in (np.float16, np.bool_):
        return block.astype(np.float32), True
    lossless = False
    if np.issubdtype(block.dtype, np.integer):
        lossless = not block.size or (
            block.max() <= _F32_EXACT_INT and block.min() >= -_F32_EXACT_INT
        )
    with np.errstate(over="ignore"):  # huge float64 values become +-inf: still monotone
        return block.astype(np.float32), lossless


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """Map ``float32`` values to ``uint32`` so that unsigned order equals float order.

    ``-0.0`` is first turned into ``+0.0`` (they compare equal, so they must tie).
    """
    v = values + np.float32(0.0)  # new array; -0.0 + 0.0 == +0.0
    bits = v.view(np.uint32)
    flip = (v.view(np.int32) >> 31).view(np.uint32)  # all ones for negative numbers, else 0
    flip |= np.uint32(0x80000000)
    bits ^= flip
    return bits


def packed_sorted_keys(block32: np.ndarray) -> np.ndarray:
    """Row-wise sorted packed keys of a ``float32`` block, shape ``(B, G)``, ``uint64``.

    The caller guarantees ``B <= max_packed_rows(G)``.
    """
    num_rows, num_g = block32.shape
    ib = index_bits(num_g)
    keys = _ordered_bits(block32).astype(np.uint64)
    keys <<= np.uint64(ib)
    keys |= np.arange(num_g, dtype=np.uint64)
    keys |= (np.arange(num_rows, dtype=np.uint64) << np.uint64(32 + ib))[:, None]
    keys.sort(axis=1)
    return keys


def tie_repair(keys: np.ndarray, block: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Repair of the packed order of a block whose ``float32`` rounding may have created ties.

    Args:
        keys: the row-wise sorted packed keys of ``block`` rounded to ``float32``.
        block: the original values.

    Returns:
        ``None`` if no two neighbours share a rounded value, else ``(flat, src)``: ``flat`` are the
        flattened positions (ascending) of all entries in runs of equal rounded values, and the
        correct (stable) order puts at ``flat[k]`` the entry now at ``flat[src[k]]``.
    """
    num_g = keys.shape[1]
    ib = np.uint64(index_bits(num_g))
    value = keys >> ib  # row and rounded value
    eq = value[:, 1:] == value[:, :-1]  # eq[i, j]: sorted positions j and j+1 tie
    del value
    if not eq.any():
        return None
    tied = np.zeros(keys.shape, dtype=bool)
    tied[:, 1:] |= eq
    tied[:, :-1] |= eq
    r, c = np.nonzero(tied)  # row-major: each run is contiguous, runs in order
    continues = np.zeros(r.shape, dtype=bool)
    has_prev = c > 0
    continues[has_prev] = eq[r[has_prev], c[has_prev] - 1]
    run_id = np.cumsum(~continues)
    gidx = (keys[r, c] & np.uint64((1 << int(ib)) - 1)).astype(np.intp)
    src = np.lexsort((gidx, block[r, gidx], run_id))  # by run, then true value, then index
    return r * num_g + c, src


def packed_positions(
    sorted_keys: np.ndarray,
    block32: np.ndarray,
    rows: np.ndarray,
    gidx: np.ndarray,
    repair: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """0-based rank of gallery item ``gidx[k]`` in the stable ranking of query row ``rows[k]``.

    ``repair`` is the result of :func:`tie_repair` when the block was rounded to ``float32``.
    """
    num_g = block32.shape[1]
    ib = index_bits(num_g)
    keys = _ordered_bits(block32[rows, gidx]).astype(np.uint64)
    keys <<= np.uint64(ib)
    keys |= gidx.astype(np.uint64)
    keys |= rows.astype(np.uint64) << np.uint64(32 + ib)
    flat = np.searchsorted(sorted_keys.reshape(-1), keys)
    if repair is not None and flat.size:
        tied_flat, src = repair
        dest = np.empty_like(src)
        dest[src] = np.arange(src.size)  # the entry now at tied_flat[j] belongs at dest[j]
        j = np.minimum(np.searchsorted(tied_flat, flat), tied_flat.size - 1)
        flat = np.where(tied_flat[j] == flat, tied_flat[dest[j]], flat)
    return flat - rows.astype(np.int64) * num_g


def stable_argsort(block: np.ndarray) -> np.ndarray:
    """Row-wise stable argsort (ties by gallery index) of a NaN-free block, as ``intp``."""
    num_rows, num_g = block.shape
    if num_rows > max_packed_rows(num_g):
        return np.argsort(block, axis=1, kind="stable")
    b32, lossless = to_float32(block)
    keys = packed_sorted_keys(b32)
    order = (keys & np.uint64((1 << index_bits(num_g)) - 1)).astype(np.intp)
    repair = None if lossless else tie_repair(keys, block)
    if repair is not None:
        tied_flat, src = repair
        flat_order = order.reshape(-1)
        flat_order[tied_flat] = flat_order[tied_flat[src]]
    return order


def inverse_positions(order: np.ndarray) -> np.ndarray:
    """``pos[i, order[i, j]] = j``: the 0-based rank of every gallery item, per row."""
    num_rows, num_g = order.shape
    pos = np.empty(order.shape, dtype=np.intp)
    pos[np.arange(num_rows)[:, None], order] = np.arange(num_g)
    return pos


def query_stats(
    rows: np.ndarray, pos: np.ndarray, junk: np.ndarray, num_rows: int, num_g: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-query rank statistics from the ranks of the query's same-identity gallery items.

    Args:
        rows: query row (within the block) of each same-identity gallery item.
        pos: 0-based rank of that item in the query's full stable ranking.
        junk: whether the item is junk (same camera) and must be removed.
        num_rows: number of queries in the block.
        num_g: gallery size.

    Returns:
        ``(num_matches, first_rank, ap, inp)``, one entry per query. Ranks are 1-based positions
        among the *kept* gallery items; ``first_rank`` is 0 and ``ap``/``inp`` are 0 for queries
        without a match.
    """
    srt = np.argsort(rows.astype(np.int64) * num_g + pos)  # unique keys: by row, then by rank
    rows, pos, junk = rows[srt], pos[srt], junk[srt]
    starts = np.searchsorted(rows, np.arange(num_rows))
    junk_excl = np.cumsum(junk) - junk  # junk items before each item (whole block)
    junk_before = junk_excl - junk_excl[starts[rows]]  # ... within its own row
    kept_rank = pos + 1 - junk_before

    is_match = ~junk
    mrows = rows[is_match]
    mrank = kept_rank[is_match].astype(np.float64)
    num_matches = np.bincount(mrows, minlength=num_rows)
    mstart = np.cumsum(num_matches) - num_matches
    ordinal = np.arange(mrows.size) - mstart[mrows] + 1  # i-th match of its query
    ap_sum = np.bincount(mrows, weights=ordinal / mrank, minlength=num_rows)

    valid = num_matches > 0
    first_rank = np.zeros(num_rows, dtype=np.int64)
    ap = np.zeros(num_rows, dtype=np.float64)
    inp = np.zeros(num_rows, dtype=np.float64)
    first_rank[valid] = mrank[mstart[valid]]
    last_rank = mrank[mstart[valid] + num_matches[valid] - 1]
    ap[valid] = ap_sum[valid] / num_matches[valid]
    inp[valid] = num_matches[valid] / last_rank
    return num_matches, first_rank, ap, inp
