"""Reading ``-epo.fif`` files, with an error that names the file whatever MNE raises."""
from __future__ import annotations

from pathlib import Path

import mne


def read_epochs_file(path) -> mne.Epochs:
    """Read an MNE epochs file, preloaded.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        MNE cannot read it as epochs (another file type, a raw or evoked file, a truncated
        file). MNE signals these with many exception types (``AttributeError`` for a text
        file, ``ValueError``, ``OSError``), so any of them becomes this one, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such epochs file.")
    try:
        return mne.read_epochs(path, preload=True, verbose=False)
    except Exception as exc:  # noqa: BLE001 -- see Raises
        raise ValueError(f"{path} is not an MNE epochs file that can be read "
                         f"({type(exc).__name__}: {exc}); write epochs with "
                         "epochs.save('name-epo.fif').") from exc
