"""benchmarks/lrp_speed.py --baseline times the other checkout's code, all of it: the package
imports itself by absolute names (``lrp_captum.core...``), which must not resolve to the
checkout under test."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_baseline_package_runs_only_the_other_checkouts_modules(tmp_path):
    other = tmp_path / "other_checkout"
    shutil.copytree(ROOT / "lrp_captum", other / "lrp_captum",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import inspect, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "import lrp_speed\n"
        f"lrp_speed.import_baseline({str(other)!r})\n"
        "import lrp_captum\n"
        "baseline = sys.modules['lrp_captum_baseline']\n"
        "print(inspect.getsourcefile(baseline.LRP))\n"
        "print(inspect.getsourcefile(lrp_captum.LRP))\n"
        "loaded = [m.__file__ for n, m in sys.modules.items()\n"
        "          if n.startswith('lrp_captum_baseline') and getattr(m, '__file__', None)]\n"
        f"print(all(f.startswith({str(other)!r}) for f in loaded), len(loaded) > 10)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    baseline_file, own_file, every_module = done.stdout.strip().splitlines()[-3:]
    assert baseline_file.startswith(str(other))
    assert own_file.startswith(str(ROOT / "lrp_captum"))
    assert every_module == "True True"


def test_the_baseline_import_leaves_no_compiled_files_in_the_other_checkout(tmp_path):
    """The rewritten modules are compiled in memory: a .pyc of them would be loaded by the
    next plain import of that checkout."""
    other = tmp_path / "other_checkout"
    shutil.copytree(ROOT / "lrp_captum", other / "lrp_captum",
                    ignore=shutil.ignore_patterns("__pycache__"))
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
            f"import lrp_speed; lrp_speed.import_baseline({str(other)!r})\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(other.rglob("*.pyc"))
