"""Simulated EEG data sets with known ground truth, made with :mod:`mne.simulation`.

Two tasks, both generated the same way: a three-shell sphere head model fitted to a real 10-20
montage subset, a small discrete source space (dipoles placed below chosen electrodes, oriented
radially), a fixed-orientation forward solution, :func:`mne.simulation.simulate_raw` for the
brain signal and :func:`mne.simulation.add_noise` for coloured sensor noise, then epoching.

- ``"motor_imagery"``: two classes (``left_hand``, ``right_hand``). Ongoing 8-12 Hz mu rhythms
  under C3 and C4; during the imagery window the rhythm over the hemisphere contralateral to the
  imagined hand loses most of its power (event-related desynchronisation). A posterior alpha
  rhythm in the same band and 1/f background sources are not class-related.
- ``"erp"``: two classes (``non_target``, ``target``). Every trial has an occipital N1 at
  100 ms; target trials add a parietal P3-like component at 300 ms (jittered) under Pz.

The ground truth (which channels carry the class-discriminative sources and in which time
window) is derived from the forward model: a channel is "true" if the discriminative source's
scalp amplitude there is at least ``truth_threshold`` of its peak (after average reference). It is
stored with the epochs as :mod:`lrp_captum.eeg.ground_truth` describes (JSON in
``epochs.info["description"]``, a ``<stem>.truth.json`` sidecar when saved), and per-epoch class
labels in ``epochs.metadata``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import mne
import numpy as np
import pandas as pd
from scipy import signal

from lrp_captum.eeg.ground_truth import GroundTruth, attach_ground_truth, read_ground_truth, sidecar_path

__all__ = ["DEFAULT_CHANNELS", "TASKS", "GroundTruth", "make_montage", "make_info", "simulate_epochs",
           "read_ground_truth", "save_simulated"]

# A 28-channel 10-20 subset: dense enough over sensorimotor and parietal cortex for both tasks.
DEFAULT_CHANNELS = (
    "Fp1 Fp2 F7 F3 Fz F4 F8 FC5 FC1 FC2 FC6 T7 C3 Cz C4 T8 "
    "CP5 CP1 CP2 CP6 P7 P3 Pz P4 P8 O1 Oz O2"
).split()

TASKS = ("motor_imagery", "erp")

def make_montage() -> mne.channels.DigMontage:
    """Standard 10-20 montage. mne >= 1.13 names it ``colin27_1020`` (``standard_1020`` warns)."""
    name = "colin27_1020" if "colin27_1020" in mne.channels.get_builtin_montages() else "standard_1020"
    return mne.channels.make_standard_montage(name)


def make_info(ch_names=DEFAULT_CHANNELS, sfreq: float = 100.0) -> mne.Info:
    """EEG ``Info`` for ``ch_names`` at ``sfreq`` Hz with standard electrode positions."""
    info = mne.create_info(list(ch_names), sfreq, "eeg")
    info.set_montage(make_montage())
    return info


def _pink_noise(rng: np.random.Generator, n_signals: int, n_times: int) -> np.ndarray:
    """1/f noise, shape (n_signals, n_times), unit standard deviation per row."""
    spectrum = np.fft.rfft(rng.standard_normal((n_signals, n_times)), axis=1)
    freqs = np.fft.rfftfreq(n_times)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n=n_times, axis=1)
    noise -= noise.mean(axis=1, keepdims=True)
    return noise / noise.std(axis=1, keepdims=True)


def _narrowband(rng, n_signals, n_times, sfreq, band=(8.0, 12.0)) -> np.ndarray:
    """Band-limited noise (an ongoing rhythm with natural amplitude fluctuations), unit std."""
    sos = signal.butter(4, band, btype="bandpass", fs=sfreq, output="sos")
    x = signal.sosfiltfilt(sos, rng.standard_normal((n_signals, n_times)), axis=1)
    return x / x.std(axis=1, keepdims=True)


def _smooth_window(times: np.ndarray, tmin: float, tmax: float, ramp: float) -> np.ndarray:
    """1 inside [tmin, tmax], 0 outside, with raised-cosine ramps of ``ramp`` s (inside the window)."""
    w = np.zeros_like(times)
    inside = (times >= tmin) & (times <= tmax)
    w[inside] = 1.0
    up = (times >= tmin) & (times < tmin + ramp)
    w[up] = 0.5 - 0.5 * np.cos(np.pi * (times[up] - tmin) / ramp)
    down = (times > tmax - ramp) & (times <= tmax)
    w[down] = 0.5 - 0.5 * np.cos(np.pi * (tmax - times[down]) / ramp)
    return w


class _HeadModel:
    """Sphere head model, dipoles below electrodes, fixed-orientation forward solution."""

    def __init__(self, info: mne.Info, named_sources: dict, n_background: int, rng, depth=0.65):
        self.info = info
        sphere = mne.make_sphere_model("auto", "auto", info, verbose=False)
        r0, radius = np.asarray(sphere["r0"]), float(sphere.radius)
        positions = {ch["ch_name"]: ch["loc"][:3] for ch in info["chs"]}
        rr, nn = [], []
        for electrode in named_sources.values():
            direction = positions[electrode] - r0
            direction /= np.linalg.norm(direction)
            rr.append(r0 + depth * radius * direction)
            nn.append(direction)
        # Background sources: random positions in the upper half of the brain, random orientation.
        while len(rr) < len(named_sources) + n_background:
            p = rng.uniform(-1, 1, 3)
            if np.linalg.norm(p) < 0.75 and p[2] > -0.2:
                o = rng.standard_normal(3)
                rr.append(r0 + radius * p)
                nn.append(o / np.linalg.norm(o))
        src = mne.setup_volume_source_space(
            pos=dict(rr=np.array(rr), nn=np.array(nn)), sphere=sphere, verbose=False)
        fwd = mne.make_forward_solution(info, trans=None, src=src, bem=sphere, eeg=True,
                                        meg=False, verbose=False)
        self.forward = mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True,
                                                    verbose=False)
        self.vertices = [self.forward["src"][0]["vertno"]]
        gain = self.forward["sol"]["data"]
        self.gain_avgref = gain - gain.mean(axis=0, keepdims=True)
        self.names = list(named_sources)

    def scale_to_microvolts(self, index: int, peak_uv: float) -> float:
        """Dipole moment (A m) that gives ``peak_uv`` µV at the source's strongest channel."""
        return peak_uv * 1e-6 / np.abs(self.gain_avgref[:, index]).max()

    def truth_channels(self, index: int, threshold: float) -> list:
        g = np.abs(self.gain_avgref[:, index])
        return [self.info["ch_names"][i] for i in np.flatnonzero(g >= threshold * g.max())]


def simulate_epochs(
    task: str = "motor_imagery",
    n_epochs: int = 160,
    sfreq: float = 100.0,
    ch_names=DEFAULT_CHANNELS,
    seed: int = 0,
    subject_seed: int = 0,
    noise_uv: float = 2.0,
    background_uv: float = 3.0,
    truth_threshold: float = 0.5,
    effect_scale: float = 1.0,
) -> mne.Epochs:
    """Simulate a labelled EEG data set with known ground truth.

    Parameters
    ----------
    task : {"motor_imagery", "erp"}
        Which paradigm to simulate (see module docstring).
    n_epochs : int
        Number of trials, balanced between the two classes (random order).
    sfreq : float
        Sampling rate in Hz.
    ch_names : sequence of str
        10-20 channel names (must exist in the standard montage).
    seed : int
        Seed of the trials (labels, rhythms, noise); equal seeds give identical data.
    subject_seed : int
        Seed of the head geometry (background source positions); data sets with the same
        ``subject_seed`` come from the same simulated subject.
    noise_uv : float
        Standard deviation (µV) of the coloured sensor noise added by ``mne.simulation.add_noise``.
    background_uv : float
        Peak scalp amplitude (µV) of each of the 30 1/f background sources.
    truth_threshold : float
        Relative scalp amplitude defining the ground-truth channels.
    effect_scale : float
        Strength of the class difference relative to the default (1): the depth of the
        motor-imagery desynchronisation (85 % x ``effect_scale``, at most 100 %) or the P3
        amplitude (20 µV x ``effect_scale``). Small values give a weak-signal data set on which
        a classifier stays near chance; 0 gives classes that differ only in their labels.

    Returns
    -------
    epochs : mne.Epochs
        Data in V, average reference, preloaded; motor imagery: 2.0 s from 0 s, ERP: 1.0 s from
        -0.2 s. ``epochs.metadata`` has columns ``label`` (int) and ``class_name``; the ground truth
        is in ``read_ground_truth(epochs)``.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {TASKS}.")
    if effect_scale < 0:
        raise ValueError(f"effect_scale must be >= 0, got {effect_scale}.")
    rng = np.random.default_rng(seed)
    info = make_info(ch_names, sfreq)
    if task == "motor_imagery":
        named = {"mu_left_hemisphere": "C3", "mu_right_hemisphere": "C4", "posterior_alpha": "Oz"}
        class_names = ["left_hand", "right_hand"]
        tmin, trial_len, iti = 0.0, 2.0, 1.0
        window = (0.5, 1.5)
    else:
        named = {"p3": "Pz", "n1": "Oz"}
        class_names = ["non_target", "target"]
        tmin, trial_len, iti = -0.2, 1.0, 0.6
        window = (0.2, 0.4)
    head = _HeadModel(info, named, n_background=30, rng=np.random.default_rng(subject_seed))

    labels = rng.permutation(np.arange(n_epochs) % 2)
    n_trial = int(round(trial_len * sfreq))
    n_iti = int(round(iti * sfreq))
    stride = n_trial + n_iti
    n_total = n_iti + n_epochs * stride
    onsets = n_iti + np.arange(n_epochs) * stride - int(round(tmin * sfreq))  # sample of t=0
    t_trial = np.arange(n_trial) / sfreq + tmin

    n_src = len(head.vertices[0])
    sources = np.zeros((n_src, n_total))
    n_named = len(named)
    bg = _pink_noise(rng, n_src - n_named, n_total)
    for k in range(n_src - n_named):
        sources[n_named + k] = bg[k] * head.scale_to_microvolts(n_named + k, background_uv)

    if task == "motor_imagery":
        mu = _narrowband(rng, 3, n_total, sfreq)
        erd = _smooth_window(t_trial, *window, ramp=0.2)
        for idx, peak in ((0, 10.0), (1, 10.0), (2, 8.0)):
            envelope = np.ones(n_total)
            if idx < 2:
                for label, onset in zip(labels, onsets):
                    # left_hand (0) desynchronises the right hemisphere (C4, idx 1) and vice versa.
                    if (label == 0 and idx == 1) or (label == 1 and idx == 0):
                        start = onset + int(round(tmin * sfreq))
                        envelope[start:start + n_trial] *= 1.0 - min(0.85 * effect_scale, 1.0) * erd
            sources[idx] = mu[idx] * envelope * head.scale_to_microvolts(idx, peak)
        discriminative = [0, 1]
    else:
        for label, onset in zip(labels, onsets):
            start = onset + int(round(tmin * sfreq))
            sl = slice(start, start + n_trial)
            n1_lat = 0.10 + rng.normal(0, 0.01)
            sources[1, sl] += -np.exp(-0.5 * ((t_trial - n1_lat) / 0.025) ** 2) * \
                head.scale_to_microvolts(1, 5.0) * rng.uniform(0.7, 1.3)
            if label == 1:
                p3_lat = 0.30 + rng.normal(0, 0.015)
                sources[0, sl] += np.exp(-0.5 * ((t_trial - p3_lat) / 0.05) ** 2) * \
                    head.scale_to_microvolts(0, 20.0 * effect_scale) * rng.uniform(0.8, 1.2)
        discriminative = [0]

    stc = mne.VolSourceEstimate(sources, head.vertices, tmin=0.0, tstep=1.0 / sfreq)
    raw = mne.simulation.simulate_raw(info, stc, forward=head.forward, verbose=False)
    cov = mne.make_ad_hoc_cov(raw.info, std=dict(eeg=noise_uv * 1e-6), verbose=False)
    with warnings.catch_warnings():
        # The ad-hoc covariance is diagonal; MNE's hint about average-reference projectors
        # concerns estimated covariances and does not apply.
        warnings.filterwarnings("ignore", message="No average EEG reference")
        mne.simulation.add_noise(raw, cov, iir_filter=[1.0, -0.6, 0.1], rng=seed,
                                 verbose=False)
    raw.set_eeg_reference("average", projection=False, verbose=False)
    raw.filter(0.5, 40.0, verbose=False)

    truth_channels = []
    for idx in discriminative:
        truth_channels += [c for c in head.truth_channels(idx, truth_threshold)
                           if c not in truth_channels]
    truth = GroundTruth(task=task, channels=truth_channels, tmin=window[0], tmax=window[1],
                        class_names=class_names, threshold=truth_threshold,
                        sources=dict(named))

    events = np.column_stack([onsets, np.zeros(n_epochs, int), labels + 1]).astype(int)
    event_id = {name: k + 1 for k, name in enumerate(class_names)}
    metadata = pd.DataFrame({"label": labels.astype(int),
                             "class_name": [class_names[k] for k in labels]})
    epochs = mne.Epochs(raw, events, event_id, tmin=tmin, tmax=tmin + (n_trial - 1) / sfreq,
                        baseline=None, preload=True, metadata=metadata, verbose=False)
    return attach_ground_truth(epochs, truth)


def save_simulated(epochs: mne.Epochs, path) -> tuple[Path, Path]:
    """Save epochs as ``*-epo.fif`` plus a ``*.truth.json`` ground-truth sidecar.

    Returns
    -------
    (fif_path, sidecar_path)
    """
    path = Path(path)
    if not path.name.endswith("-epo.fif"):
        raise ValueError(f"{path}: MNE epochs files must end in '-epo.fif'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs.save(path, overwrite=True, verbose=False)
    sidecar = sidecar_path(path)
    sidecar.write_text(read_ground_truth(epochs).to_json())
    return path, sidecar
