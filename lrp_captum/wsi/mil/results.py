"""Reading finished ``explain_mil_slide`` folders back (for apps and notebooks)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrp_captum.wsi.mil.explain import FORMAT


@dataclass
class MILExplanation:
    """A finished MIL explanation folder, read back.

    Attributes
    ----------
    folder : the output folder.
    manifest : ``manifest.json``.
    tiles : ``tiles.csv`` as a pandas DataFrame (one row per tissue tile).
    evidence_map : (H, W) float32 evidence at ``manifest["output_downsample"]`` level-0 px per pixel.
    tile_maps : (k, T, T) float32 pixel maps of the top tiles; ``tile_maps_index`` (k,) their tiles.
    """

    folder: Path
    manifest: dict
    tiles: object
    evidence_map: np.ndarray
    tile_maps: np.ndarray
    tile_maps_index: np.ndarray

    def pixel_map(self, tile_index: int) -> np.ndarray | None:
        """(T, T) pixel map of a tile, or None when the tile has none."""
        hits = np.flatnonzero(self.tile_maps_index == int(tile_index))
        return self.tile_maps[hits[0]] if len(hits) else None


def find_mil_explanations(results_dir) -> list[Path]:
    """Finished MIL explanation folders under ``results_dir`` (itself included), sorted."""
    root = Path(results_dir)
    found = []
    for manifest in sorted(root.rglob("manifest.json")):
        try:
            if json.loads(manifest.read_text()).get("format") == FORMAT:
                found.append(manifest.parent)
        except (ValueError, OSError):
            continue
    return found


def read_mil_explanation(folder) -> MILExplanation:
    """Read a finished folder; ``ValueError`` naming it when it is not one or is damaged."""
    from lrp_captum.csv_cells import read_csv_frame
    import zarr

    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}")
        group = zarr.open_group(str(folder / "evidence.zarr"), mode="r")
        return MILExplanation(folder=folder, manifest=manifest, tiles=read_csv_frame(folder / "tiles.csv"),
                              evidence_map=np.asarray(group["evidence"][:]), tile_maps=np.asarray(group["tile_maps"][:]),
                              tile_maps_index=np.asarray(group["tile_maps_index"][:]))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{folder} is not a readable MIL explanation ({exc}); rerun "
                         f"`lrp-captum slide explain-mil SLIDE --mil HEAD --out {folder} --overwrite`") from None
