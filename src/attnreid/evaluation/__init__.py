"""Distances, ranking metrics (CMC, mAP, mINP), feature extraction and evaluation."""

from attnreid.evaluation.blocked import evaluate_features_blocked
from attnreid.evaluation.distance import compute_distance
from attnreid.evaluation.evaluate import evaluate, score_features
from attnreid.evaluation.features import FeatureSet, extract_features, load_features, save_features
from attnreid.evaluation.metrics import RankResult, evaluate_rank
from attnreid.evaluation.report import results_table
from attnreid.evaluation.rerank import re_ranking, rerank_features

__all__ = [
    "FeatureSet",
    "RankResult",
    "compute_distance",
    "evaluate",
    "evaluate_features_blocked",
    "evaluate_rank",
    "extract_features",
    "load_features",
    "re_ranking",
    "rerank_features",
    "results_table",
    "save_features",
    "score_features",
]
