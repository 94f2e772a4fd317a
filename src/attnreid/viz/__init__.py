"""Figures: attention maps over an image (``attnreid viz attention``)."""

from attnreid.viz.attention import attention_figure, draw_attention
from attnreid.viz.cmc import cmc_figure, draw_cmc
from attnreid.viz.ranks import RankedItem, draw_ranks, ranked_rows, ranks_figure

__all__ = [
    "RankedItem",
    "attention_figure",
    "cmc_figure",
    "draw_attention",
    "draw_cmc",
    "draw_ranks",
    "ranked_rows",
    "ranks_figure",
]
