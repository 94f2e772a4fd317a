"""Plain-text result tables (Markdown-compatible, so they paste into a README)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from attnreid.evaluation.metrics import RankResult

COLUMNS = (("rank1", "R1"), ("rank5", "R5"), ("rank10", "R10"), ("mAP", "mAP"), ("mINP", "mINP"))


def results_table(rows: Sequence[tuple[str, RankResult | Mapping[str, float]]]) -> str:
    """``[(label, result), ...]`` -> a Markdown table in percent with one decimal."""
    width = max([len("model"), *(len(label) for label, _ in rows)])
    head = f"| {'model':<{width}} | " + " | ".join(f"{h:>5}" for _, h in COLUMNS) + " |"
    sep = f"|{'-' * (width + 2)}|" + "|".join("-" * 7 for _ in COLUMNS) + "|"
    lines = [head, sep]
    for label, res in rows:
        vals = res.as_dict() if isinstance(res, RankResult) else res
        cells = " | ".join(f"{100 * float(vals[k]):5.1f}" for k, _ in COLUMNS)
        lines.append(f"| {label:<{width}} | {cells} |")
    return "\n".join(lines)


def verification_table(rows: Sequence[tuple[str, RankResult]]) -> str:
    """The verification view of ``[(label, result), ...]``: true match rate (%) and distance
    threshold at each false match rate (rows without a verification view are left out)."""
    rows = [(label, r.verification) for label, r in rows if r.verification is not None]
    if not rows:
        return ""
    fmrs = rows[0][1].fmrs
    width = max([len("model"), *(len(label) for label, _ in rows)])
    head = f"| {'model':<{width}} | " + " | ".join(f"TPR@FPR={f:g} (threshold)" for f in fmrs)
    lines = [head + " | pairs (genuine / impostor) |"]
    lines.append(f"|{'-' * (width + 2)}|" + "|".join("---" for _ in fmrs) + "|---|")
    for label, v in rows:
        cells = " | ".join(f"{100 * t:.1f} ({d:.4g})" for t, d in zip(v.tmrs, v.thresholds))
        lines.append(f"| {label:<{width}} | {cells} | {v.num_genuine:,} / {v.num_impostor:,} |")
    return "\n".join(lines)
