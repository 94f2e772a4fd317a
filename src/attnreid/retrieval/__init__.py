"""Retrieval at scale: a searchable gallery index, folders of crops, ONNX export, thresholds.

Python API (see ``attnreid index build`` / ``attnreid search`` for the command line)::

    import attnreid
    from attnreid.retrieval import GalleryIndex, scan_folder

    extractor = attnreid.load("runs/x/checkpoints/last.ckpt")
    crops = scan_folder("crops/")
    feats = extractor.extract(crops.items()).features
    index = GalleryIndex.build(feats, crops.paths, pids=crops.pids, info=extractor.source)
    hits = index.search(extractor.extract(["query.jpg"]).features, top_k=10)[0]
"""

from attnreid.retrieval.export import export_onnx, quantize_onnx
from attnreid.retrieval.gallery import Crops, parse_crop_name, scan_folder
from attnreid.retrieval.index import GalleryIndex, SearchHit

__all__ = [
    "Crops",
    "GalleryIndex",
    "SearchHit",
    "export_onnx",
    "parse_crop_name",
    "quantize_onnx",
    "scan_folder",
]
