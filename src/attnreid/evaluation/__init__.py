"""Distances, ranking metrics (CMC, mAP, mINP), feature extraction and evaluation."""

from attnreid.evaluation.distance import compute_distance
from attnreid.evaluation.evaluate import evaluate
from attnreid.evaluation.features import FeatureSet, extract_features, load_features, save_features
from attnreid.evaluation.metrics import RankResult, evaluate_rank, rank_blocks
from attnreid.evaluation.report import results_table
from attnreid.evaluation.rerank import re_ranking, rerank_features
from attnreid.evaluation.scoring import Scorer

__all__ = [
    "FeatureSet",
    "RankResult",
    "Scorer",
    "compute_distance",
    "evaluate",
    "evaluate_rank",
    "extract_features",
    "load_features",
    "rank_blocks",
    "re_ranking",
    "rerank_features",
    "results_table",
    "save_features",
]
