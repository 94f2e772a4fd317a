"""Oracle for k-reciprocal re-ranking: the authors' algorithm, literally, slow on purpose.

Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017. This is a line-by-line port of the authors' public Python function
``re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3)`` (the one torchreid
and most re-ID code copy), with the paper's equations named in comments. Full N x N dense
matrices, Python loops over every image: only for tests and for the benchmark's baseline.

Two deliberate differences, both also in :mod:`attnreid.evaluation.rerank`:

* ``np.argsort(..., kind="stable")`` instead of the default unstable sort, so ties in distance
  are broken by index (the authors' order of tied items is unspecified);
* ``square=False`` skips the squaring of the input distances (the authors square them; the
  default ``square=True`` does as they do).
"""

from __future__ import annotations

import numpy as np


def re_ranking_reference(
    q_g_dist: np.ndarray,
    q_q_dist: np.ndarray,
    g_g_dist: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    square: bool = True,
) -> np.ndarray:
    """The ``(Q, G)`` re-ranked distance matrix ``d*`` (float32)."""
    original_dist = np.concatenate(
        [
            np.concatenate([q_q_dist, q_g_dist], axis=1),
            np.concatenate([q_g_dist.T, g_g_dist], axis=1),
        ],
        axis=0,
    )
    if square:
        original_dist = np.power(original_dist, 2).astype(np.float32)
    else:
        original_dist = original_dist.astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist, kind="stable").astype(np.int32)

    query_num = q_g_dist.shape[0]
    gallery_num = q_g_dist.shape[0] + q_g_dist.shape[1]
    all_num = gallery_num

    for i in range(all_num):
        # k-reciprocal neighbours R(p, k1) (eq. 3): i's k1 nearest that have i among theirs
        forward_k_neigh_index = initial_rank[i, : k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        # robust set R*(p, k1) (eq. 4): add R(q, k1/2) of each member q that overlaps by > 2/3
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            half = int(np.around(k1 / 2.0)) + 1
            candidate_forward_k_neigh_index = initial_rank[candidate, :half]
            candidate_backward_k_neigh_index = initial_rank[candidate_forward_k_neigh_index, :half]
            fi_candidate = np.where(candidate_backward_k_neigh_index == candidate)[0]
            candidate_k_reciprocal_index = candidate_forward_k_neigh_index[fi_candidate]
            if len(
                np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)
            ) > 2.0 / 3 * len(candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(
                    k_reciprocal_expansion_index, candidate_k_reciprocal_index
                )

        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        # Gaussian-kernel weights of the k-reciprocal feature V_p (eq. 8), rows sum to 1
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1.0 * weight / np.sum(weight)
    original_dist = original_dist[:query_num,]
    if k2 != 1:
        # local query expansion (eq. 11): mean of the k2 nearest neighbours' V
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank
    invIndex = []
    for i in range(gallery_num):
        invIndex.append(np.where(V[:, i] != 0)[0])

    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)

    # Jaccard distance (eq. 10) with min / max of the weights; rows of V sum to 1, so
    # sum(max) = 2 - sum(min)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, gallery_num], dtype=np.float32)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2.0 - temp_min)

    # final distance (eq. 12)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    del original_dist
    del V
    del jaccard_dist
    final_dist = final_dist[:query_num, query_num:]
    return final_dist
