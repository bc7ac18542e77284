"""Planning a slide run: the options checked, the slide opened, the tissue tiles found, and
everything the later steps share in one :class:`SlideRun` (see :mod:`lrp_captum.wsi.pipeline`)."""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lrp_captum.visualization.colormaps import SLIDE_CMAP
from lrp_captum.wsi.tile_relevance import DEFAULT_COMPOSITE, default_composite
from lrp_captum.wsi.grid import TileGrid, make_grid, tissue_tiles
from lrp_captum.wsi.model import ModelBundle, load_model
from lrp_captum.wsi.reader import EmptyTissueError, SlideError, SlideReadError, open_slide, slide_mpp
from lrp_captum.wsi.stitch import footprints
from lrp_captum.wsi.tissue import TissueMask, detect_tissue
from lrp_captum.wsi.work import WORK, BatchStore

DEFAULT_OVERLAP = 0.125  # seam-free with the stitching window; cost measured in docs/wsi.md


def default_output_downsample(tile_side0: float) -> int:
    """A power of two giving about 16 output pixels across one tile (level-0 px per output px)."""
    return int(2 ** max(0, round(math.log2(max(tile_side0 / 16, 1)))))


@dataclass
class SlideRun:
    """The state one :func:`explain_slide` call shares between its steps.

    Set by :func:`plan_run` (inputs and decisions) and completed by the steps (results).

    Attributes
    ----------
    slide_path, slide : the slide file and its open ``openslide.OpenSlide``.
    bundle : the tile classifier.
    grid, tissue, tiles : the tile grid, the tissue mask and the tissue tiles
        (:func:`~lrp_captum.wsi.grid.tissue_tiles`, level-0 boxes).
    out : the output folder.
    output_downsample : level-0 px per pixel of the relevance map.
    params, params_hash : everything that determines the outputs, and its SHA-256.
    composite, output_mode, target : the LRP settings.
    batch_size, num_workers : tiles per committed batch; DataLoader reader processes.
    quiet, progress_callback : progress reporting.
    mask_glass : no colour where the tissue mask says glass (see :func:`stitch_relevance`).
    cmap : diverging colour map of the overlay and overview (:mod:`lrp_captum.visualization.colormaps`).
    t_start : ``time.perf_counter()`` when the call started; ``timings`` (s) per step.
    vmax : colour scale of the maps (set by :func:`stitch_relevance`).
    heat, heat_downsample : the relevance map reduced for the overview PNG, and output px per
        heat px (set by :func:`stitch_relevance`).
    outputs : manifest key -> file name of the outputs written.
    predictions : (N,) predicted class index per tile (set by :func:`write_tile_tables`).
    relevance_on_glass : share of the stitched |R| that fell on glass (set by
        :func:`stitch_relevance` with ``mask_glass``).
    """

    slide_path: Path
    slide: Any
    bundle: ModelBundle
    grid: TileGrid
    tissue: TissueMask
    tiles: np.ndarray
    out: Path
    output_downsample: int
    params: dict
    params_hash: str
    composite: Any = DEFAULT_COMPOSITE
    output_mode: str = "logit"
    target: Any = "predicted"
    batch_size: int = 32
    num_workers: int | None = None
    quiet: bool = False
    progress_callback: Callable[[int, int], None] | None = None
    mask_glass: bool = True
    cmap: str = SLIDE_CMAP
    t_start: float = 0.0
    timings: dict = field(default_factory=dict)
    vmax: float = 1.0
    heat: np.ndarray | None = None
    heat_downsample: int = 1
    outputs: dict = field(default_factory=dict)
    predictions: np.ndarray | None = None
    relevance_on_glass: float | None = None

    @property
    def work(self) -> Path:
        """The work folder of per-batch results."""
        return self.out / WORK

    @property
    def stage(self) -> Path:
        """Where the output files are written before :func:`publish_outputs` moves them to ``out``."""
        return self.work / "outputs"

    @property
    def n_tiles(self) -> int:
        return len(self.tiles)

    @property
    def n_batches(self) -> int:
        return -(-self.n_tiles // self.batch_size)

    @property
    def map_shape(self) -> tuple[int, int]:
        """(H, W) of the relevance map in output pixels."""
        w0, h0 = self.slide.dimensions
        d = self.output_downsample
        return -(-h0 // d), -(-w0 // d)

    @cached_property
    def boxes(self) -> np.ndarray:
        """(N, 4) output-pixel footprints of the tiles (:func:`~lrp_captum.wsi.stitch.footprints`)."""
        return footprints(self.tiles, self.output_downsample)

    @cached_property
    def store(self) -> BatchStore:
        """Reader of the committed batches."""
        return BatchStore(self.work, self.batch_size)


def check_options(*, composite=None, output_mode: str = "logit", mpp=None, tile_size=None,
                  overlap: float = 0.0, output_downsample=None, min_tissue: float = 0.1,
                  slide_mpp_override=None, batch_size: int = 32, num_workers=None, threads=None) -> None:
    """Raise ``ValueError`` naming the first option of :func:`explain_slide` that cannot work.

    Called before anything is opened or written, so a bad option costs nothing and leaves nothing.
    An unknown composite name raises :class:`lrp_captum.UnknownCompositeError` (a ``ValueError``
    listing the registered names).
    """
    from lrp_captum import OUTPUT_MODES, composite_needs_bounds

    if isinstance(composite, str):
        composite_needs_bounds(composite)
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
    for name, value in (("mpp", mpp), ("slide_mpp", slide_mpp_override)):
        if value is not None and not (_is_number(value) and 0 < value < math.inf):
            raise ValueError(f"{name} must be a positive number of µm per pixel, got {value!r}")
    for name, value, low in (("tile_size", tile_size, 1), ("output_downsample", output_downsample, 1),
                             ("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                             ("threads", threads, 1)):
        if value is not None and not (_is_integer(value) and value >= low):
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (_is_number(overlap) and 0 <= overlap < 1):
        raise ValueError(f"overlap must be a fraction in [0, 1), got {overlap!r}")
    if not (_is_number(min_tissue) and 0 <= min_tissue <= 1):
        raise ValueError(f"min_tissue must be a fraction in [0, 1], got {min_tissue!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def tissue_tiling(slide, slide_path, mpp0: float, *, target_mpp: float, tile_size: int, overlap: float = 0.0,
                  min_tissue: float = 0.1, tissue_options: dict | None = None, empty: str = ""):
    """``(tissue mask, tile grid, tissue tiles)`` of an open slide at ``target_mpp`` / ``tile_size``.

    Raises :class:`~lrp_captum.wsi.reader.SlideReadError` when the thumbnail cannot be read and
    :class:`~lrp_captum.wsi.reader.EmptyTissueError` when no tile has ``min_tissue`` (``empty``
    follows "no tissue tiles" in that message: what an empty result means for the caller).
    """
    try:
        tissue = detect_tissue(slide, slide_mpp=mpp0, **(tissue_options or {}))
    except SlideError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a damaged file fails here first
        raise SlideReadError(f"slide {slide_path}: reading the thumbnail failed ({exc}); the file may be "
                             f"truncated or corrupt") from exc
    grid = make_grid(*slide.dimensions, mpp0, slide.level_downsamples, target_mpp=target_mpp,
                     tile_size=tile_size, overlap=overlap)
    tiles = tissue_tiles(grid, tissue, min_tissue)
    if len(tiles) == 0:
        raise EmptyTissueError(
            f"slide {slide_path}: no tissue tiles{empty} (tissue mask covers {100 * tissue.area_fraction:.2f} % "
            f"of the slide at saturation threshold {tissue.threshold:.3f}; min_tissue={min_tissue}). "
            f"Check the slide, or lower the tissue threshold or min_tissue (CLI: --tissue-threshold, "
            f"--min-tissue)")
    return tissue, grid, tiles


def plan_run(slide_path, model_config, out_dir, *, target="predicted", composite=None,
             output_mode: str = "logit", mpp: float | None = None, tile_size: int | None = None,
             overlap: float = DEFAULT_OVERLAP, output_downsample: int | None = None, min_tissue: float = 0.1,
             tissue_options: dict | None = None, slide_mpp_override: float | None = None,
             batch_size: int = 32, num_workers: int | None = None, device: str = "auto",
             mask_glass: bool = True, quiet: bool = False, progress_callback=None) -> SlideRun:
    """Open the slide, load the model, find the tissue tiles and fix the parameters.

    Arguments as for :func:`explain_slide`. Nothing is written.

    Raises
    ------
    SlideReadError, MissingMppError, EmptyTissueError (all ``SlideError``), ``ValueError`` for an
    unknown target class.
    """
    t_start = time.perf_counter()
    check_options(composite=composite, output_mode=output_mode, mpp=mpp, tile_size=tile_size,
                  overlap=overlap, output_downsample=output_downsample, min_tissue=min_tissue,
                  slide_mpp_override=slide_mpp_override, batch_size=batch_size, num_workers=num_workers)
    slide_path = Path(slide_path)
    slide = open_slide(slide_path)
    mpp0 = slide_mpp(slide, slide_path, slide_mpp_override)
    bundle = model_config if isinstance(model_config, ModelBundle) else load_model(model_config, device)
    if composite is None:
        composite = default_composite(bundle)
    target_mpp = float(bundle.mpp if mpp is None else mpp)
    tile_size = int(bundle.tile_size if tile_size is None else tile_size)
    if target != "predicted":
        bundle.class_index(target)  # validate early
    tissue, grid, tiles = tissue_tiling(slide, slide_path, mpp0, target_mpp=target_mpp, tile_size=tile_size,
                                        overlap=overlap, min_tissue=min_tissue, tissue_options=tissue_options)
    d_out = int(output_downsample if output_downsample is not None
                else default_output_downsample(tile_size * grid.scale))
    timings = {"open_tissue_grid_s": time.perf_counter() - t_start}

    st = slide_path.stat()
    params = dict(slide=dict(path=str(slide_path.resolve()), bytes=st.st_size, mtime_ns=st.st_mtime_ns),
                  model=dict(config={k: v for k, v in bundle.config.items()}, weights_sha256=bundle.weights_sha256),
                  target=target, composite=str(composite), output_mode=output_mode, target_mpp=target_mpp,
                  tile_size=tile_size, overlap=overlap, output_downsample=d_out, min_tissue=min_tissue,
                  tissue_options=tissue_options or {}, mask_glass=bool(mask_glass), slide_mpp=mpp0,
                  batch_size=batch_size,
                  device=bundle.device.type, torch_threads=torch.get_num_threads(), n_tiles=len(tiles),
                  tiles_sha256=hashlib.sha256(tiles.tobytes()).hexdigest())
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return SlideRun(slide_path=slide_path, slide=slide, bundle=bundle, grid=grid, tissue=tissue, tiles=tiles,
                    out=Path(out_dir), output_downsample=d_out, params=params, params_hash=params_hash,
                    composite=composite, output_mode=output_mode, target=target, batch_size=batch_size,
                    num_workers=num_workers, quiet=quiet, progress_callback=progress_callback,
                    mask_glass=bool(mask_glass), t_start=t_start, timings=timings)
