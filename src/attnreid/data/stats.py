"""Split statistics of a loaded dataset, and the published numbers to check them against.

Counts are identities / images (tracklets for video) / cameras per split, as loaded. Published
numbers count files *as distributed*: the loaders drop junk (Market-1501's identity -1, MARS's
junk tracklets) and record how many in ``info["junk"]``; a loader may also record whole rows
as distributed in ``info["distributed"]`` (MARS's test set). A ``test`` row is query and
gallery together (distinct items); an ``all`` row adds the training split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from attnreid.data.base import ReIDDataset


@dataclass(frozen=True)
class Published:
    """Published split sizes: ``counts[(row, field)]``, fields ``ids``, ``images``, ``cameras``."""

    source: str
    counts: dict[tuple[str, str], int]


def _p(source: str, **rows: tuple[int | None, int | None] | tuple[int, int, int]) -> Published:
    counts = {}
    for row, values in rows.items():
        for field, value in zip(("ids", "images", "cameras"), values):
            if value is not None:
                counts[(row, field)] = value
    return Published(source, counts)


_MARKET = _p(
    "Zheng et al., ICCV 2015",
    train=(751, 12936),
    query=(750, 3368),
    gallery=(None, 19732),
)
_DUKE = _p(
    "Zheng, Zheng, Yang, ICCV 2017",
    train=(702, 16522),
    query=(None, 2228),
    gallery=(None, 17661),
)
_CUHK03_NEW = {
    "labeled": _p(
        "Zhong et al., CVPR 2017, CUHK03-NP labeled",
        train=(767, 7368),
        query=(700, 1400),
        gallery=(700, 5328),
    ),
    "detected": _p(
        "Zhong et al., CVPR 2017, CUHK03-NP detected",
        train=(767, 7365),
        query=(700, 1400),
        gallery=(700, 5332),
    ),
}
_CUHK03_CLASSIC = _p("Li et al., CVPR 2014, classic split", train=(1367, None), query=(100, None))
_MSMT17 = _p(
    "Wei et al., CVPR 2018",
    train=(1041, 32621),
    query=(None, 11659),
    gallery=(None, 82161),
)
_MARS = _p("Zheng et al., ECCV 2016", train=(625, 8298), test=(636, 12180))
_CUHK01 = _p(
    "Li, Zhao, Wang, ACCV 2012, 485 / 486 identity split",
    all=(971, 3884, 2),
    train=(485, 1940),
    query=(486, 972),
    gallery=(486, 972),
)
_BY_NAME = {
    "market1501": _MARKET,
    "dukemtmcreid": _DUKE,
    "msmt17": _MSMT17,
    "mars": _MARS,
    "cuhk01": _CUHK01,
}


def published_counts(ds: ReIDDataset) -> Published | None:
    """The published numbers that apply to ``ds`` as loaded (with its options), or None."""
    info = ds.info
    if ds.name == "market1501" and info.get("distractors_500k"):
        counts = {k: v for k, v in _MARKET.counts.items() if k[0] != "gallery"}
        return Published(_MARKET.source + ", gallery not checked (+500k distractors)", counts)
    if ds.name == "cuhk03":
        if info.get("protocol") == "classic":
            return _CUHK03_CLASSIC
        return _CUHK03_NEW.get(str(info.get("images")))
    if ds.name == "msmt17" and not info.get("include_val", True):
        counts = {k: v for k, v in _MSMT17.counts.items() if k != ("train", "images")}
        return Published(_MSMT17.source + ", train images not checked (val left out)", counts)
    return _BY_NAME.get(ds.name)


def is_video(ds: ReIDDataset) -> bool:
    return any(it.frames for it in ds.train[:1] + ds.query[:1] + ds.gallery[:1])


def split_counts(ds: ReIDDataset) -> dict[str, dict[str, int]]:
    """Rows ``train``, ``query``, ``gallery`` (as loaded), ``test`` and ``all``."""
    rows: dict[str, dict[str, int]] = dict(ds.stats())
    test = {it.path: it for it in ds.query + ds.gallery}.values()
    rows["test"] = {
        "ids": len({it.pid for it in test if it.pid >= 0}),
        "images": len(test),
        "cameras": len({it.camid for it in test}),
    }
    rows["all"] = {
        "ids": rows["train"]["ids"] + rows["test"]["ids"],
        "images": rows["train"]["images"] + rows["test"]["images"],
        "cameras": len({it.camid for it in ds.train} | {it.camid for it in test}),
    }
    return rows


def distributed_counts(ds: ReIDDataset) -> dict[str, dict[str, int]]:
    """:func:`split_counts` with dropped junk added back and loader-given rows applied."""
    rows = {k: dict(v) for k, v in split_counts(ds).items()}
    junk: dict[str, int] = dict(ds.info.get("junk", {}))  # type: ignore[call-overload]
    for split, n in junk.items():
        rows[split]["images"] += n
        rows["test"]["images"] += n if split in ("query", "gallery") else 0
        rows["all"]["images"] += n
    given: dict[str, Any] = dict(ds.info.get("distributed", {}))  # type: ignore[call-overload]
    for row, values in given.items():
        rows.setdefault(row, {}).update(values)
    return rows


def compare_with_published(ds: ReIDDataset) -> list[str]:
    """One line per count that differs from the published number (empty: all match)."""
    pub = published_counts(ds)
    if pub is None:
        return []
    rows = distributed_counts(ds)
    unit = "tracklets" if is_video(ds) else "images"
    out = []
    for (row, field), expected in pub.counts.items():
        found = rows[row][field]
        if found != expected:
            label = unit if field == "images" else field
            out.append(f"{row} {label}: {found:,} here, {expected:,} published ({pub.source})")
    return out


def format_stats(ds: ReIDDataset) -> str:
    """A table of identities / images (or tracklets and frames) / cameras per split."""
    video = is_video(ds)
    rows = split_counts(ds)
    unit = "tracklets" if video else "images"
    head = f"  split    |   ids | {unit:>9} | cameras" + (" |    frames" if video else "")
    lines = [f"{ds.name}: {ds.root}", head]
    pub = published_counts(ds)
    extra = [r for r in ("test", "all") if pub is not None and any(k[0] == r for k in pub.counts)]
    for split in ("train", "query", "gallery", *extra):
        r = distributed_counts(ds)[split] if split in extra else rows[split]
        line = f"  {split:<8} | {r['ids']:5d} | {r['images']:9,d} | {r['cameras']:7d}"
        if video and split not in extra:
            line += f" | {sum(len(it.frames) for it in ds.split(split)):9,d}"
        lines.append(line)
    junk: dict[str, int] = dict(ds.info.get("junk", {}))  # type: ignore[call-overload]
    if junk:
        dropped = ", ".join(f"{k} {v:,}" for k, v in junk.items())
        lines.append(f"  junk {unit} dropped: {dropped}")
    if pub is not None:
        lines.append(f"published ({pub.source}; counts as distributed):")
        for row in dict.fromkeys(r for r, _ in pub.counts):
            cells = [pub.counts.get((row, f)) for f in ("ids", "images", "cameras")]
            shown = [f"{c:,}" if c is not None else "-" for c in cells]
            lines.append(f"  {row:<8} | {shown[0]:>5} | {shown[1]:>9} | {shown[2]:>7}")
    return "\n".join(lines)
