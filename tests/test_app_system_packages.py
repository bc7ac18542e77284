"""``scripts/install_system_packages.sh``, the step of ``make install`` / ``make test`` that puts
chromium and npm on a fresh machine. Run with a PATH of stand-in ``id`` and ``apt-get`` commands
that record their calls, so no package is installed and nothing depends on this machine."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install_system_packages.sh"
BASH = "/bin/bash"


def run(tmp_path, uid: int, args: list[str], with_apt: bool = True):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "apt.log"
    (bin_dir / "id").write_text(f"#!{BASH}\necho {uid}\n")
    if with_apt:
        (bin_dir / "apt-get").write_text(f'#!{BASH}\necho "$DEBIAN_FRONTEND apt-get $*" >> {calls}\n')
    (bin_dir / "present-tool").write_text(f"#!{BASH}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    done = subprocess.run([BASH, str(SCRIPT), *args], env={"PATH": str(bin_dir)}, capture_output=True, text=True)
    return done, (calls.read_text().splitlines() if calls.exists() else [])


def test_root_installs_the_missing_packages_with_apt_get(tmp_path):
    done, calls = run(tmp_path, 0, ["chromium:chromium", "present-tool:tools", "npm:npm"])
    assert done.returncode == 0
    assert calls == [" apt-get update -qq", "noninteractive apt-get install -y -qq chromium npm"]


def test_nothing_is_installed_when_every_command_is_there(tmp_path):
    done, calls = run(tmp_path, 0, ["present-tool:tools"])
    assert done.returncode == 0 and calls == [] and done.stderr == ""


@pytest.mark.parametrize("require, code", [([], 0), (["--require"], 1)])
def test_a_user_without_root_is_told_which_package_to_install(tmp_path, require, code):
    done, calls = run(tmp_path, 1000, [*require, "chromium:chromium"])
    assert calls == [] and done.returncode == code
    assert "sudo apt-get install -y chromium" in done.stderr


def test_root_without_apt_get_is_told_which_package_to_install(tmp_path):
    done, calls = run(tmp_path, 0, ["--require", "chromium:chromium"], with_apt=False)
    assert done.returncode == 1 and "apt-get install -y chromium" in done.stderr
