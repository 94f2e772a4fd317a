"""Retrieval at scale: a searchable gallery index, folder feature extraction, ONNX export.

Python API (see ``attnreid index build`` / ``attnreid search`` for the command line)::

    from attnreid.retrieval import GalleryIndex, extract_crops, load_feature_model, scan_folder

    model, cfg, source = load_feature_model(checkpoint="runs/x/checkpoints/last.ckpt")
    crops = scan_folder("crops/")
    index = GalleryIndex.build(extract_crops(model, cfg, crops), crops.paths, pids=crops.pids)
    hits = index.search(extract_crops(model, cfg, ["query.jpg"]), top_k=10)[0]
"""

from attnreid.retrieval.export import OnnxModel, export_checkpoint, export_onnx, read_onnx_metadata
from attnreid.retrieval.gallery import (
    Crops,
    extract_crops,
    load_feature_model,
    model_source,
    parse_crop_name,
    scan_folder,
)
from attnreid.retrieval.index import GalleryIndex, SearchHit

__all__ = [
    "Crops",
    "GalleryIndex",
    "OnnxModel",
    "SearchHit",
    "export_checkpoint",
    "export_onnx",
    "extract_crops",
    "load_feature_model",
    "model_source",
    "parse_crop_name",
    "read_onnx_metadata",
    "scan_folder",
]
