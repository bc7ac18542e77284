"""Planning a slide run: the slide opened, the model loaded, the tissue tiles found and the run's
parameters fixed, in one frozen :class:`SlidePlan` that the later steps read and never change
(see :mod:`lrp_captum.wsi.pipeline`)."""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrp_captum.visualization.colormaps import SLIDE_CMAP
from lrp_captum.wsi.grid import TileGrid, make_grid, tissue_tiles
from lrp_captum.wsi.model import ModelBundle, load_model
from lrp_captum.wsi.reader import EmptyTissueError, SlideError, SlideReadError, open_slide, slide_mpp
from lrp_captum.wsi.slide_options import SlideOptions
from lrp_captum.wsi.tile_relevance import default_composite
from lrp_captum.wsi.tissue import TissueMask, detect_tissue

WORK = ".lrp_work"  # the work folder of an unfinished run, inside its output folder


def default_output_downsample(tile_side0: float) -> int:
    """A power of two giving about 16 output pixels across one tile (level-0 px per output px)."""
    return int(2 ** max(0, round(math.log2(max(tile_side0 / 16, 1)))))


def file_record(path: Path) -> dict:
    """What identifies an input file in a run's parameters: resolved path, size, modification time."""
    st = path.stat()
    return dict(path=str(path.resolve()), bytes=st.st_size, mtime_ns=st.st_mtime_ns)


def parameters_hash(params: dict) -> str:
    """SHA-256 of a run's parameters (JSON with sorted keys): what decides "the same run"."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class SlidePlan:
    """What a slide run does, fixed before anything is written (:func:`plan_slide_run`).

    Attributes
    ----------
    slide_path, slide : the slide file and its open ``openslide.OpenSlide``.
    slide_mpp : µm per level-0 pixel in use (recorded, or ``slide_mpp_override``).
    bundle : the tile classifier.
    grid, tissue, tiles : the tile grid, the tissue mask and the tissue tiles
        (:func:`~lrp_captum.wsi.grid.tissue_tiles`, level-0 boxes).
    out : the output folder.
    options : the options as given (:class:`~lrp_captum.wsi.slide_options.SlideOptions`).
    parameters : the options the outputs depend on, as used: defaults decided by the run
        (composite, tile resolution and size, output downsample, device, threads) filled in.
    params, params_hash : everything that determines the outputs (slide and model files,
        ``parameters``, the tiles), and its SHA-256.
    cmap : diverging colour map of the overlay and overview (:mod:`lrp_captum.visualization.colormaps`).
    t_start : ``time.perf_counter()`` when planning started; ``seconds``: how long planning took.
    """

    slide_path: Path
    slide: Any
    slide_mpp: float
    bundle: ModelBundle
    grid: TileGrid
    tissue: TissueMask
    tiles: np.ndarray
    out: Path
    options: SlideOptions
    parameters: dict
    params: dict
    params_hash: str
    t_start: float
    seconds: float
    cmap: str = SLIDE_CMAP

    @property
    def composite(self):
        return self.parameters["composite"]

    @property
    def output_downsample(self) -> int:
        """Level-0 px per pixel of the relevance map."""
        return self.parameters["output_downsample"]

    @property
    def work(self) -> Path:
        """The work folder of per-batch results."""
        return self.out / WORK

    @property
    def stage(self) -> Path:
        """Where the output files are written before they are published into ``out``."""
        return self.work / "outputs"

    @property
    def n_tiles(self) -> int:
        return len(self.tiles)

    @property
    def n_batches(self) -> int:
        return -(-self.n_tiles // self.options.batch_size)

    @property
    def map_shape(self) -> tuple[int, int]:
        """(H, W) of the relevance map in output pixels."""
        w0, h0 = self.slide.dimensions
        d = self.output_downsample
        return -(-h0 // d), -(-w0 // d)


def tissue_tiling(slide, slide_path, mpp0: float, *, target_mpp: float, tile_size: int, overlap: float = 0.0,
                  min_tissue: float = 0.1, tissue_options: dict | None = None, empty: str = ""):
    """``(tissue mask, tile grid, tissue tiles)`` of an open slide at ``target_mpp`` / ``tile_size``.

    Raises :class:`~lrp_captum.wsi.reader.SlideReadError` when the thumbnail cannot be read and
    :class:`~lrp_captum.wsi.reader.EmptyTissueError` when no tile has ``min_tissue`` (``empty``
    follows "no tissue tiles" in that message: what an empty result means for the caller).
    """
    grid = make_grid(*slide.dimensions, mpp0, slide.level_downsamples, target_mpp=target_mpp,
                     tile_size=tile_size, overlap=overlap)  # refuses an exploding grid before the tissue step
    try:
        tissue = detect_tissue(slide, slide_mpp=mpp0, **(tissue_options or {}))
    except SlideError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a damaged file fails here first
        raise SlideReadError(f"slide {slide_path}: reading the thumbnail failed ({exc}); the file may be "
                             f"truncated or corrupt") from exc
    tiles = tissue_tiles(grid, tissue, min_tissue)
    if len(tiles) == 0:
        raise EmptyTissueError(
            f"slide {slide_path}: no tissue tiles{empty} (tissue mask covers {100 * tissue.area_fraction:.2f} % "
            f"of the slide at saturation threshold {tissue.threshold:.3f}; min_tissue={min_tissue}). "
            f"Check the slide, or lower the tissue threshold or min_tissue (CLI: --tissue-threshold, "
            f"--min-tissue)")
    return tissue, grid, tiles


def plan_slide_run(slide_path, model_config, out_dir, options: SlideOptions | None = None) -> SlidePlan:
    """Open the slide, load the model, find the tissue tiles and fix the parameters; nothing is written.

    Parameters
    ----------
    slide_path, model_config, out_dir : as for :func:`~lrp_captum.wsi.pipeline.explain_slide`.
    options : the run's options (default: all defaults).

    Raises
    ------
    SlideReadError, MissingMppError, EmptyTissueError (all ``SlideError``), ``ValueError`` for an
    unknown target class.
    """
    t_start = time.perf_counter()
    options = options if options is not None else SlideOptions()
    slide_path = Path(slide_path)
    slide = open_slide(slide_path)
    mpp0 = slide_mpp(slide, slide_path, options.slide_mpp_override)
    bundle = model_config if isinstance(model_config, ModelBundle) else load_model(model_config, options.device)
    if options.target != "predicted":
        bundle.class_index(options.target)  # validate early
    target_mpp = float(bundle.mpp if options.mpp is None else options.mpp)
    tile_size = int(bundle.tile_size if options.tile_size is None else options.tile_size)
    tissue, grid, tiles = tissue_tiling(slide, slide_path, mpp0, target_mpp=target_mpp, tile_size=tile_size,
                                        overlap=options.overlap, min_tissue=options.min_tissue,
                                        tissue_options=options.tissue_options)
    composite = options.composite if options.composite is not None else default_composite(bundle)
    used = options.replace(
        composite=composite, mpp=target_mpp, tile_size=tile_size, tissue_options=options.tissue_options or {},
        output_downsample=options.output_downsample or default_output_downsample(tile_size * grid.scale),
        device=bundle.device.type, threads=torch.get_num_threads())
    parameters = dict(used.hashed(), composite=str(composite))
    params = dict(slide=file_record(slide_path),
                  model=dict(config=dict(bundle.config), weights_sha256=bundle.weights_sha256),
                  parameters=parameters, slide_mpp=mpp0, n_tiles=len(tiles),
                  tiles_sha256=hashlib.sha256(tiles.tobytes()).hexdigest())
    return SlidePlan(slide_path=slide_path, slide=slide, slide_mpp=mpp0, bundle=bundle, grid=grid, tissue=tissue,
                     tiles=tiles, out=Path(out_dir), options=options, parameters=parameters, params=params,
                     params_hash=parameters_hash(params), t_start=t_start, seconds=time.perf_counter() - t_start)
