"""Distances, ranking metrics (CMC, mAP, mINP), feature extraction and evaluation."""

from attnreid.evaluation.evaluate import evaluate
from attnreid.evaluation.extractor import FeatureExtractor
from attnreid.evaluation.features import FeatureSet, load_features, save_features
from attnreid.evaluation.metrics import RankResult, evaluate_rank, rank_blocks
from attnreid.evaluation.report import results_table
from attnreid.evaluation.rerank import re_ranking
from attnreid.evaluation.scoring import Scorer, rerank_features
from attnreid.utils.distance import compute_distance

__all__ = [
    "FeatureExtractor",
    "FeatureSet",
    "RankResult",
    "Scorer",
    "compute_distance",
    "evaluate",
    "evaluate_rank",
    "load_features",
    "rank_blocks",
    "re_ranking",
    "rerank_features",
    "results_table",
    "save_features",
]
