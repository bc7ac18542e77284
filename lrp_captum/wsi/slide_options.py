"""The options of a slide run, declared once.

Each :class:`Option` in :data:`SLIDE_OPTIONS` holds an option's name (the keyword of
:func:`~lrp_captum.wsi.pipeline.explain_slide`), default, kind of value (how a value is checked,
and how text from a command line or a form becomes one), help text, command-line flag and the
commands that offer it, the label of its field in the app's explain form (if it has one), and
whether the outputs depend on it (then it enters the run's ``parameters``: the manifest, and the
hash that decides whether an output folder already holds this run). Everything else is
generated from the table:

- :class:`SlideOptions`, the checked values: the Python API
  (``explain_slide(slide, model, out, SlideOptions(...))`` or keyword arguments) and the run's
  ``parameters`` (:meth:`OptionValues.hashed`);
- the argparse options of ``slide explain``, ``slide cohort``, ``slide explain-mil`` and
  ``slide train-mil`` (:mod:`lrp_captum.cli.slide_options`);
- the fields of the app's explain form (:func:`form_fields`);
- the signature of ``explain_slide`` (:func:`keyword_parameters`).

Adding an option is one entry in :data:`SLIDE_OPTIONS` (see "How to add a slide option" in
docs/architecture.md).
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrp_captum.wsi.tile_relevance import DEFAULT_COMPOSITE, TRANSFORMER_COMPOSITE
from lrp_captum.wsi.tissue import MAX_SATURATION_THRESHOLD, MIN_SATURATION

__all__ = ["Kind", "Number", "Choice", "Flag", "Text", "Value", "ClassTarget", "CompositeName", "DeviceName",
           "TissueThreshold", "POSITIVE_INT", "NON_NEGATIVE_INT", "POSITIVE_NUMBER", "RESOLUTION", "MPP_RANGE",
           "MAX_THREADS", "MAX_TILE_SIZE", "MAX_OUTPUT_DOWNSAMPLE", "MAX_SAMPLE_SIDE", "int_in", "fraction", "Option",
           "OptionTable", "OptionValues", "SLIDE_OPTIONS", "SlideOptions", "FormField", "form_fields",
           "keyword_parameters", "check_options", "DEFAULT_OVERLAP", "EXPLAIN", "COHORT", "EXPLAIN_MIL",
           "TRAIN_MIL", "BY_MODEL", "ExistingPath", "HeadArchitecture", "ClassNames", "HEAD_ARCHITECTURES",
           "FEATURE_OPTIONS", "HEAD_OPTIONS"]

#: the commands that take slide options (``lrp-captum slide <command>``)
EXPLAIN, COHORT, EXPLAIN_MIL, TRAIN_MIL = "explain", "cohort", "explain-mil", "train-mil"
DEFAULT_OVERLAP = 0.125  # seam-free with the stitching window; cost measured in docs/wsi.md
#: how the app's form and the help name the default composite (None: chosen by model)
BY_MODEL = f"by model ({TRANSFORMER_COMPOSITE} for transformers, else {DEFAULT_COMPOSITE})"


# --- kinds of values -----------------------------------------------------------------------------
class Kind:
    """What values an option takes.

    ``check(value)`` returns the value (normalised, e.g. ``int`` for ``np.int64``) or raises
    ``ValueError`` saying what is wrong; ``parse(text)`` turns the text of a command line or a form
    field into a checked value. Messages leave out the option's name: the caller adds it.
    """

    name = "value"  # argparse names the type with it
    choices: tuple | None = None  # a fixed list of values (a select field, argparse ``choices``)

    def check(self, value):
        return value

    def parse(self, text: str):
        return self.check(text)

    def widget(self) -> str:
        """How the app's form asks for it: ``"text"`` (parsed), ``"select"`` or ``"checkbox"``."""
        return "select" if self.choices is not None else "text"


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class Number(Kind):
    """An ``int`` or ``float`` within bounds (finite)."""

    type: type
    expected: str  # "a positive integer"
    out_of_range: str  # "must be a positive integer (1 or more)"
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    @property
    def name(self) -> str:  # argparse: "invalid positive integer value"
        return self.expected.split(" ", 1)[1]

    def _in_range(self, v) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    def check(self, value):
        integral = isinstance(value, (int, np.integer)) or self.type is float
        if not (_is_number(value) and integral and math.isfinite(value)):
            raise ValueError(f"expected {self.expected}, got {value!r}")
        if not self._in_range(value):
            raise ValueError(f"{self.out_of_range}, got {value!r}")
        return self.type(value)

    def parse(self, text: str):
        try:
            value = self.type(text)
        except (TypeError, ValueError):
            raise ValueError(f"expected {self.expected}, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"expected {self.expected}, got {text!r}")
        if not self._in_range(value):
            raise ValueError(f"{self.out_of_range}, got {text!r}")
        return value


POSITIVE_INT = Number(int, "a positive integer", "must be a positive integer (1 or more)", low=1)
NON_NEGATIVE_INT = Number(int, "an integer >= 0", "must be 0 or more", low=0)
POSITIVE_NUMBER = Number(float, "a positive number", "must be a positive number (greater than 0)", low=0,
                         low_open=True)

# Bounds of the options whose extreme values would not fail but crash or run forever (a thread or
# process per unit, a grid cell per tile): each is far beyond any real use, so only mistakes meet it.
#: torch threads and reader processes: more than any machine's cores (100000 threads segfault)
MAX_THREADS = 1024
#: µm per pixel: a light microscope resolves about 0.2 µm, and a 224-px tile at 1000 µm/px is 22 cm
MPP_RANGE = (0.01, 1000.0)
#: tile side in px (models take 224-1024) and level-0 px per heatmap px
MAX_TILE_SIZE = 16384
MAX_OUTPUT_DOWNSAMPLE = 2 ** 20


def int_in(low: int, high: int) -> Number:
    """An integer in ``[low, high]``."""
    expected = {0: "an integer >= 0", 1: "a positive integer"}.get(low, f"an integer >= {low}")
    return Number(int, expected, f"must be an integer from {low} to {high}", low=low, high=high)


#: the largest side of a sample slide (``slide sample``, ``slide cohort-sample``): 100000 px is
#: 30 GB of pixels; beyond it the writer would run for days
MAX_SAMPLE_SIDE = 100_000

#: a resolution in µm/px within :data:`MPP_RANGE`
RESOLUTION = Number(float, "a positive number", f"must be a resolution from {MPP_RANGE[0]:g} to {MPP_RANGE[1]:g} "
                                                f"µm/px", low=MPP_RANGE[0], high=MPP_RANGE[1])


def fraction(upper_open: bool = False) -> Number:
    """A number in ``[0, 1]`` (``[0, 1)`` with ``upper_open``)."""
    interval = f"[0, 1{')' if upper_open else ']'}"
    return Number(float, f"a number in {interval}", f"must be in {interval}", low=0, high=1, high_open=upper_open)


@dataclass(frozen=True)
class Choice(Kind):
    """One of a fixed list of strings."""

    choices: tuple

    def check(self, value):
        if value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, got {value!r}")
        return value


class Flag(Kind):
    """True or False (a command-line switch, a checkbox)."""

    name = "flag"

    def check(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"must be True or False, got {value!r}")
        return bool(value)

    def widget(self) -> str:
        return "checkbox"


class Text(Kind):
    """Any string."""

    name = "text"

    def check(self, value):
        if not isinstance(value, str):
            raise ValueError(f"must be a string, got {value!r}")
        return value


class Value(Kind):
    """A value of the Python API that ``accepts(value)`` allows (``what`` names it in messages);
    as text, ``parse(text)``."""

    def __init__(self, accepts, what: str, parse=str):
        self.accepts, self.what, self._parse = accepts, what, parse
        self.name = what

    def check(self, value):
        if not self.accepts(value):
            raise ValueError(f"must be {self.what}, got {value!r}")
        return value

    def parse(self, text: str):
        return self.check(self._parse(text))


class ClassTarget(Kind):
    """``"predicted"``, a class name or a class index (whether the model has it is checked later)."""

    name = "class"

    def check(self, value):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and value.strip():
            return value
        raise ValueError(f"must be 'predicted', a class name or a class index, got {value!r}")

    def parse(self, text: str):
        text = text.strip()
        return self.check(int(text) if text.lstrip("-").isdigit() else text)


class CompositeName(Kind):
    """A registered LRP composite name (``lrp_captum.list_composites()``) or a ``Composite``."""

    name = "composite"

    def check(self, value):
        from lrp_captum.core.composites import composite_needs_bounds

        composite_needs_bounds(value)  # an unknown name: UnknownCompositeError listing the known ones
        return value

    @property
    def choices(self) -> tuple:
        from lrp_captum.core.composites import list_composites

        return tuple(list_composites())


class DeviceName(Kind):
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether it is present is checked later)."""

    name = "device"

    def check(self, value):
        if not (isinstance(value, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value)):
            raise ValueError(f"unknown device {value!r}; use auto, cpu, cuda, cuda:N or mps")
        return value


class TissueThreshold(Kind):
    """Options of :func:`~lrp_captum.wsi.tissue.detect_tissue` (a dict); as text, the saturation
    threshold in ``[0, 1]`` (``{"threshold": value}``)."""

    name = "tissue threshold"
    threshold = fraction()

    def check(self, value):
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"must be a dict of detect_tissue options, got {value!r}")
        return dict(value)

    def parse(self, text: str):
        return {"threshold": self.threshold.parse(text)}


class ExistingPath(Kind):
    """A file or folder that exists (``what`` names it in messages); returned as a ``Path``."""

    name = "existing path"

    def __init__(self, what: str = "path"):
        self.what = what

    def check(self, value):
        from pathlib import Path

        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise ValueError(f"must be a {self.what}, got {value!r}")
        path = Path(value).expanduser()
        if not path.exists():
            raise ValueError(f"{self.what} {value} does not exist")
        return path


#: MIL head architectures read from their own checkpoints (:mod:`lrp_captum.wsi.mil.published_heads`)
HEAD_ARCHITECTURES = ("abmil", "abmil-gated", "clam-sb", "clam-mb", "transmil", "xmil-attnmil")


class HeadArchitecture(Kind):
    """One of :data:`HEAD_ARCHITECTURES` or ``package.module:factory`` (a user's ``nn.Module``)."""

    name = "head architecture"

    def check(self, value):
        if isinstance(value, str) and (value in HEAD_ARCHITECTURES or re.fullmatch(r"[\w.]+:\w+", value)):
            return value
        raise ValueError(f"unknown head architecture {value!r}; choose from {', '.join(HEAD_ARCHITECTURES)} "
                         f"or give package.module:factory")


class ClassNames(Kind):
    """Distinct, non-empty class names; as text, comma-separated."""

    name = "class names"

    def check(self, value):
        names = [str(v).strip() for v in value] if isinstance(value, (list, tuple)) else None
        if not names or not all(names) or len(set(names)) != len(names):
            raise ValueError(f"must be distinct, non-empty class names, got {value!r}")
        return names

    def parse(self, text: str):
        return self.check(text.split(","))


# --- the declaration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One option, declared once.

    Attributes
    ----------
    name : the keyword argument (and attribute of :class:`SlideOptions`, key in ``parameters``).
    default : used when the option is not given; ``None`` means "decided by the run" (and is
        always allowed).
    kind : a :class:`Kind`: checks values, parses text.
    help : one line for ``--help`` and the app's form.
    hashed : the outputs depend on it, so it enters the run's ``parameters`` and their hash;
        False for how a run goes (``quiet``, ``overwrite``, reader processes).
    commands : the commands that offer it (:data:`EXPLAIN`, :data:`COHORT`, :data:`EXPLAIN_MIL`,
        :data:`TRAIN_MIL`).
    flag : its command-line flag; ``""`` derives it from the name (``--no-NAME`` for a flag that
        is on by default); None for an option of the Python API only.
    form_label : the label of its field in the app's explain form; None keeps it off the form.
    help_for : ``((command, help), ...)`` where an option means something else for a command.
    """

    name: str
    default: Any
    kind: Kind
    help: str
    hashed: bool = True
    commands: tuple = (EXPLAIN, COHORT)
    flag: str | None = ""
    form_label: str | None = None
    help_for: tuple = field(default=())

    def check(self, value):
        """``value`` checked (and normalised); ``ValueError`` (or its subclass) naming the option."""
        if value is None and self.default is None:
            return None
        try:
            return self.kind.check(value)
        except ValueError as exc:
            raise type(exc)(f"option {self.name}: {exc}") from None

    @property
    def cli_flag(self) -> str | None:
        if self.flag != "":
            return self.flag
        dashed = self.name.replace("_", "-")
        return f"--no-{dashed}" if isinstance(self.kind, Flag) and self.default else f"--{dashed}"

    @property
    def dest(self) -> str | None:
        """The attribute argparse stores it under (derived from the flag, as argparse does)."""
        flag = self.cli_flag
        if flag is None:
            return None
        return self.name if isinstance(self.kind, Flag) else flag.lstrip("-").replace("-", "_")

    def help_in(self, command: str) -> str:
        return dict(self.help_for).get(command, self.help)


class OptionTable:
    """An ordered set of options, extensible at run time.

    Parameters
    ----------
    options : the options declared here.
    shared : ``(table, command)``: also the options of ``table`` that ``command`` offers, looked up
        when asked, so an option added there reaches this table too.
    """

    def __init__(self, options, shared: tuple | None = None):
        self.declared: dict[str, Option] = {o.name: o for o in options}
        self.shared = shared

    def options(self) -> dict[str, Option]:
        found = {}
        if self.shared is not None:
            table, command = self.shared
            found.update({n: o for n, o in table.options().items() if command in o.commands})
        found.update(self.declared)
        return found

    def __iter__(self):
        return iter(self.options().values())

    def __getitem__(self, name: str) -> Option:
        return self.options()[name]

    def __contains__(self, name) -> bool:
        return name in self.options()

    def for_command(self, command: str) -> list[Option]:
        """The options ``command`` offers on its command line."""
        return [o for o in self if command in o.commands and o.cli_flag is not None]

    @contextmanager
    def extended(self, *options: Option):
        """The table with ``options`` added while the block runs (plug-ins, tests, the docs)."""
        taken = [o.name for o in options if o.name in self.declared]
        if taken:
            raise ValueError(f"options {taken} are declared already")
        self.declared.update({o.name: o for o in options})
        try:
            yield self
        finally:
            for o in options:
                self.declared.pop(o.name, None)


class OptionValues(Mapping):
    """Checked values of the options of a table (:attr:`table`): a read-only mapping whose keys
    are the option names, also readable as attributes.

    ``OptionValues(values, **more)``: ``values`` (another instance or a dict) updated with
    ``more``; options not given take their defaults. An unknown name is a ``TypeError``, as for
    a function's keyword arguments; a bad value a ``ValueError`` naming the option.
    """

    table: OptionTable

    def __init__(self, values: Mapping | None = None, /, **more):
        given = dict(values or {}, **more)
        options = self.table.options()
        unknown = sorted(set(given) - set(options))
        if unknown:
            raise TypeError(f"unknown option {', '.join(map(repr, unknown))}; the options are "
                            f"{', '.join(options)}")
        self._values = {name: o.check(given.get(name, o.default)) for name, o in options.items()}

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no option {name!r}") from None

    def __getitem__(self, name: str):
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"

    def replace(self, **changes) -> "OptionValues":
        """A copy with ``changes`` (checked again)."""
        return type(self)(self._values, **changes)

    def hashed(self) -> dict:
        """The values the outputs depend on (options declared ``hashed``), by name."""
        options = self.table.options()
        return {k: v for k, v in self._values.items() if options[k].hashed}


SLIDE_OPTIONS = OptionTable([
    Option("target", "predicted", ClassTarget(), "'predicted', a class name or index (default predicted)",
           commands=(EXPLAIN, COHORT, EXPLAIN_MIL), form_label="Target class (name, index or 'predicted')"),
    Option("composite", None, CompositeName(),
           f"LRP composite (default: {TRANSFORMER_COMPOSITE} for transformers, {DEFAULT_COMPOSITE} otherwise); "
           f"see `lrp-captum composites`", form_label="Composite"),
    Option("output_mode", "logit", Choice(("logit", "probability", "contrastive")),
           "what is explained (default logit)", form_label="Output mode"),
    Option("mpp", None, RESOLUTION, "tile resolution in µm/px (default: the model's)"),
    Option("tile_size", None, int_in(1, MAX_TILE_SIZE), "tile side in px (default: the model's)"),
    Option("overlap", DEFAULT_OVERLAP, fraction(upper_open=True),
           f"tile overlap fraction in [0, 1), blended on stitching (default {DEFAULT_OVERLAP:g})"),
    Option("output_downsample", None, int_in(1, MAX_OUTPUT_DOWNSAMPLE), "level-0 px per heatmap px (default: about 16 px per tile)",
           commands=(EXPLAIN, COHORT, EXPLAIN_MIL)),
    Option("min_tissue", 0.1, fraction(), "minimum tissue fraction per tile, 0..1 (default 0.1)",
           commands=(EXPLAIN, COHORT, EXPLAIN_MIL)),
    Option("tissue_options", None, TissueThreshold(),
           f"saturation threshold 0..1 for tissue (default: the triangle method on the thumbnail's saturation "
           f"histogram, kept within {MIN_SATURATION:g}..{MAX_SATURATION_THRESHOLD:g})",
           commands=(EXPLAIN, COHORT, EXPLAIN_MIL), flag="--tissue-threshold"),
    Option("mask_glass", True, Flag(), "colour the relevance on glass too (without it, pixels the tissue mask "
                                       "calls glass get no colour)"),
    Option("slide_mpp_override", None, RESOLUTION, "µm/px of level 0 if the slide lacks it",
           commands=(EXPLAIN, COHORT, EXPLAIN_MIL), flag="--slide-mpp"),
    Option("batch_size", 32, POSITIVE_INT, "tiles per batch (default 32)"),
    Option("threads", None, int_in(1, MAX_THREADS), "torch CPU threads (default: torch's choice)",
           commands=(EXPLAIN, COHORT, TRAIN_MIL),
           help_for=((COHORT, "torch CPU threads per slide (default: --cpus-per-slide, at least 1)"),)),
    Option("device", "auto", DeviceName(), "auto | cpu | cuda (default auto)", commands=(EXPLAIN,)),
    Option("num_workers", None, int_in(0, MAX_THREADS),
           "DataLoader reader processes, 0 = read in the main process (default: cores-1, max 4)", hashed=False,
           flag="--workers",
           help_for=((COHORT, "DataLoader reader processes inside each slide's task (default: none, the slides "
                              "run side by side)"),)),
    Option("overwrite", False, Flag(), "discard a different run already in --out", hashed=False,
           commands=(EXPLAIN, COHORT, EXPLAIN_MIL),
           help_for=((COHORT, "discard a run with other parameters already in a slide's folder"),)),
    Option("keep_work", False, Flag(), "keep per-batch files in OUT/.lrp_work", hashed=False,
           help_for=((COHORT, "keep per-batch files in OUT/<slide_id>/.lrp_work"),)),
    Option("quiet", False, Flag(), "no progress bar or messages", hashed=False,
           commands=(EXPLAIN, COHORT, EXPLAIN_MIL, TRAIN_MIL), help_for=((COHORT, "no progress bars"),)),
])


class SlideOptions(OptionValues):
    """Checked values of :data:`SLIDE_OPTIONS`: ``SlideOptions(target="positive", overlap=0.25)``."""

    table = SLIDE_OPTIONS


def check_options(**options) -> None:
    """Raise ``ValueError`` naming the first option of :func:`explain_slide` that cannot work
    (``TypeError`` for an unknown one). Nothing is opened or written."""
    SlideOptions(**options)


def keyword_parameters(table: OptionTable) -> list[inspect.Parameter]:
    """The options of ``table`` as keyword-only parameters with their defaults (for a signature)."""
    return [inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default) for o in table]


#: a MIL run from features that TRIDENT or CLAM computed (no tile is embedded): options of
#: :func:`~lrp_captum.wsi.mil.explain.explain_mil_slide` (in its ``MIL_OPTIONS``) and of ``slide cohort``
FEATURE_OPTIONS = OptionTable([
    Option("features", None, ExistingPath("features file or folder"),
           "TRIDENT/CLAM tile features instead of embedding tiles: the slide's .h5 (TRIDENT, CLAM h5_files/) or "
           ".pt (CLAM pt_files/), or a folder holding <slide>.h5 (a TRIDENT job folder, CLAM's h5_files/)",
           hashed=False, commands=(EXPLAIN_MIL, COHORT),
           help_for=((COHORT, "TRIDENT job folder or CLAM h5_files/ holding <slide>.h5 for every slide: "
                              "explains from these features (with --head), no tile is embedded"),)),
    Option("patches", None, ExistingPath("CLAM patch file or folder"),
           "CLAM's patches/ folder (or one <slide>.h5 patch file): the tile size of h5_files, the coordinates "
           "of pt_files (default: patches/ next to the features folder)", hashed=False,
           commands=(EXPLAIN_MIL, COHORT)),
    Option("patch_size_level0", None, POSITIVE_NUMBER,
           "tile side in level-0 px, for feature files that do not record it", commands=(EXPLAIN_MIL, COHORT)),
])

#: a MIL head from its own checkpoint (:func:`~lrp_captum.wsi.mil.head_files.head_from_checkpoint`):
#: the command-line options of ``explain-mil`` and ``cohort`` that name it
HEAD_OPTIONS = OptionTable([
    Option("head", None, ExistingPath("MIL head checkpoint"),
           "a MIL head's checkpoint trained on the --features (for xmil-attnmil its run folder with args.json "
           "and best_model.pt); read with weights_only=True; needs --head-arch",
           commands=(EXPLAIN_MIL, COHORT)),
    Option("head_arch", None, HeadArchitecture(),
           f"architecture of --head: {', '.join(HEAD_ARCHITECTURES)} or package.module:factory",
           commands=(EXPLAIN_MIL, COHORT)),
    Option("head_classes", None, ClassNames(),
           "comma-separated names of --head's classes, logit order (default class_0, class_1, ...)",
           commands=(EXPLAIN_MIL, COHORT)),
])


# --- the app's form ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FormField:
    """One field of the app's explain form, described for the page to render.

    Attributes
    ----------
    name : the option.
    label, help : what the field says.
    widget : ``"select"`` (one of ``choices``), ``"checkbox"`` or ``"text"`` (read with :meth:`value`).
    choices : the values of a select field; :meth:`choice_label` names them.
    default : the value shown first.
    kind : the option's :class:`Kind` (parses the text of a text field).
    """

    name: str
    label: str
    help: str
    widget: str
    choices: tuple = ()
    default: Any = None
    kind: Kind = field(default_factory=Text, compare=False, repr=False)

    def choice_label(self, value) -> str:
        return BY_MODEL if value is None else str(value)

    @property
    def text(self) -> str:
        """What a text field shows at first."""
        return "" if self.default is None else str(self.default)

    def value(self, entered):
        """The option's value from what the field holds (text is parsed; empty means the default).

        Raises ``ValueError`` naming the field when the text is not a value of the option.
        """
        if self.widget != "text":
            return entered
        if not str(entered).strip():
            return self.default
        try:
            return self.kind.parse(str(entered))
        except ValueError as exc:
            raise ValueError(f"{self.label}: {exc}") from None


def form_fields(table: OptionTable = SLIDE_OPTIONS) -> list[FormField]:
    """The fields of the app's explain form: every option with a ``form_label``, in table order."""
    fields = []
    for o in table:
        if o.form_label is None:
            continue
        widget = o.kind.widget()
        choices = ()
        if widget == "select":
            choices = ((None,) if o.default is None else ()) + tuple(o.kind.choices)
        fields.append(FormField(o.name, o.form_label, o.help, widget, choices, o.default, o.kind))
    return fields
