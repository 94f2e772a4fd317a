"""Losses: small composable modules, and a weighted sum over branches built from config."""

from attnreid.losses.composite import LOSSES, CompositeLoss, register_loss
from attnreid.losses.cross_entropy import CrossEntropyLabelSmooth
from attnreid.losses.duatm import DecorrelationLoss, MatchingTripletLoss
from attnreid.losses.semihard_triplet import SemiHardTripletLoss, mine_semihard_triplets
from attnreid.losses.triplet import TripletLoss, hard_example_mining
from attnreid.utils.distance import pairwise_distance

__all__ = [
    "LOSSES",
    "CompositeLoss",
    "CrossEntropyLabelSmooth",
    "DecorrelationLoss",
    "MatchingTripletLoss",
    "SemiHardTripletLoss",
    "TripletLoss",
    "hard_example_mining",
    "mine_semihard_triplets",
    "pairwise_distance",
    "register_loss",
]
