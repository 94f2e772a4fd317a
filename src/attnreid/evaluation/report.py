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
