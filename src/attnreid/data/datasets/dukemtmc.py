"""DukeMTMC-reID (Zheng, Zheng, Yang, ICCV 2017; frames of Ristani et al.'s DukeMTMC).

Layout as distributed (``DukeMTMC-reID/``, the same three folders as Market-1501)::

    bounding_box_train/  0001_c2_f0046182.jpg ...   (702 identities, 16,522 images)
    query/               0005_c2_f0046985.jpg ...   (702 identities, 2,228 images)
    bounding_box_test/   0002_c1_f0044158.jpg ...   (1,110 identities, 17,661 images)

Name: ``PPPP_cC_fFFFFFFF.jpg`` — identity, camera 1..8, frame. The 408 gallery-only
identities are distractors and keep their identity; there is no junk identity (a ``-1``
file, if any, would be dropped as in Market-1501). Accepted roots: the folder itself, or a
folder holding ``DukeMTMC-reID/`` (torchreid's ``dukemtmc-reid/DukeMTMC-reID/`` included).
"""

from __future__ import annotations

from pathlib import Path

from attnreid.data.base import ReIDDataset
from attnreid.data.datasets.market import MARKET_SUBDIRS, find_root, load_market_layout
from attnreid.data.datasets.registry import register_dataset

DUKE_CANDIDATES = ("DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID", "dukemtmc-reid", "dukemtmcreid")


@register_dataset("dukemtmcreid")
def dukemtmcreid(root: Path) -> ReIDDataset:
    """Load DukeMTMC-reID from ``root``."""
    base = find_root(root, MARKET_SUBDIRS, DUKE_CANDIDATES, "dukemtmcreid")
    train, query, gallery, junk = load_market_layout(base, "dukemtmcreid")
    return ReIDDataset("dukemtmcreid", base, train, query, gallery, "market", {"junk": junk})
