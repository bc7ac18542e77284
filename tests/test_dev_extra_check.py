"""tests/conftest.py: without the dev extra the run stops at once with one line naming it.

A real pytest run in a subprocess in which an import hook makes zennit and quantus unimportable
(as on a machine with only the runtime extras)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = """
import sys
hidden = set(sys.argv[1].split(",")) - {""}

class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Hide())
import pytest
sys.exit(pytest.main(["tests/test_app_system_packages.py", "--collect-only", "-q", "-p", "no:cacheprovider"]))
"""


def collect(hidden: str):
    return subprocess.run([sys.executable, "-c", RUN, hidden], cwd=str(REPO), capture_output=True, text=True)


def test_missing_dev_packages_end_the_run_with_one_clear_line():
    done = collect("zennit,quantus")
    assert done.returncode == 4
    assert "missing: zennit, quantus" in done.stdout + done.stderr
    assert "pip install -e '.[dev]'" in done.stdout + done.stderr


def test_with_the_dev_packages_the_run_goes_on():
    done = collect("")
    assert done.returncode == 0, done.stdout + done.stderr
