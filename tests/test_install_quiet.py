"""``make install`` says only what is true of any machine and prints no setuptools notice block."""
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()


def test_the_makefile_names_only_files_of_the_repository_and_no_machine():
    named = set(re.findall(r"[\w./-]+\.(?:md|sh|py|toml|txt)\b", MAKEFILE))
    assert named, "the Makefile names its scripts"
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"the Makefile names files that are not in the repository: {missing}"
    assert "this machine" not in MAKEFILE and "shared/" not in MAKEFILE


def _editable_install_line() -> list[str]:
    line = next(line.strip() for line in MAKEFILE.splitlines() if "pip install" in line and " -e " in line)
    return shlex.split(line.replace("$(PY)", sys.executable))


def test_the_editable_install_prints_no_setuptools_notice(tmp_path):
    words = _editable_install_line()
    env = dict(os.environ)
    while "=" in words[0]:  # VAR=value prefixes of the recipe line
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    src = tmp_path / "src"
    src.mkdir()
    for name in ("lrp_captum", "apps", "pyproject.toml", "setup.py", "README.md"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if (ROOT / name).is_dir() else {}))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # the recipe's pip call, into the new venv, offline and without the dependencies (present)
    i = words.index("install")
    cmd = words[:i] + ["--python", str(venv / "bin" / "python")] + words[i:i + 1] + \
        ["--no-deps", "--no-build-isolation", "--no-index"] + [w for w in words[i + 1:] if w != ".[dev]"] + ["."]
    done = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    assert "Editable installation" not in printed and "!!" not in printed, printed
