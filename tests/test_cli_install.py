"""`pip install .` (not editable) into a fresh venv, then `gate-cli` from an unrelated folder:
the packaged default model is found, the detector files come from the per-user folder, and the
answer is the one the source checkout gives.

To stay fast and offline the venv installs maskgate alone (``--no-deps --no-build-isolation``)
and sees the dependencies of the development venv through a ``.pth`` line; maskgate itself is
the installed copy (the test checks), never the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import cv2
import pytest

from gate.assets import RUNTIME_ASSETS, require

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def _run(command: list[str], **options) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=240, **options)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with maskgate pip-installed from a copy of the tracked sources; returns its bin/."""
    root = tmp_path_factory.mktemp("install")
    source = root / "src"
    tracked = _run(["git", "ls-files", "-z", "--", "pyproject.toml", "README.md", "gate", "training", "convert"], cwd=REPO)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    for name in filter(None, tracked.stdout.split("\0")):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    venv = root / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    python = venv / "bin" / "python"
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(site, "maskgate-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)])
    assert result.returncode == 0, result.stderr[-2000:]
    return venv / "bin"


@pytest.fixture(scope="module")
def user_home(tmp_path_factory) -> dict[str, str]:
    """An environment whose per-user cache holds the detector files, and no maskgate variables."""
    cache = tmp_path_factory.mktemp("cache")
    assets = cache / "maskgate" / "assets"
    assets.mkdir(parents=True)
    for asset in RUNTIME_ASSETS:
        shutil.copy(require(asset), assets / asset.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASKGATE") and k != "PYTHONPATH"}
    return {**env, "XDG_CACHE_HOME": str(cache)}


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A door photo with one bare face (our synthetic faces, never a third-party photo)."""
    from tests.door_scenes import door_background, paste, synthetic_faces

    face = synthetic_faces(1, seed=4242)[0]
    frame = door_background(seed=8)
    paste(frame, face.bare, face.box, face_height=150, x=240, y=110)
    path = tmp_path_factory.mktemp("photo") / "photo.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def test_the_installed_package_is_what_runs_and_carries_its_model(installed, user_home, tmp_path):
    where = _run([str(installed / "python"), "-c", "import gate, gate.models; print(gate.__file__); print(gate.models.default_model_path())"],
                 cwd=tmp_path, env=user_home)
    module, model = where.stdout.split()
    assert not Path(module).is_relative_to(REPO) and Path(module).is_relative_to(installed.parent)
    assert Path(model).is_file() and Path(model).with_suffix(".json").is_file()
    version = _run([str(installed / "gate-cli"), "--version"], cwd=tmp_path, env=user_home)
    sha = json.loads(Path(model).with_suffix(".json").read_text())["model_sha256"]
    assert version.returncode == 0 and sha in version.stdout


def test_test_image_from_an_unrelated_folder_gives_the_checkouts_answer(installed, user_home, photo, tmp_path):
    result = _run([str(installed / "gate-cli"), "test-image", "--json", photo.name], cwd=photo.parent, env=user_home)
    assert result.returncode == 0, result.stderr[-2000:]
    [answer] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert answer["error"] is None and len(answer["faces"]) == 1
    assert answer["faces"][0]["label"] == "without_mask" and answer["decision"] == {"verdict": "deny", "reason": "no_mask"}
    checkout = _run([sys.executable, "-m", "gate.cli", "test-image", "--json", str(photo)], cwd=tmp_path,
                    env={**user_home, "MASKGATE_ASSETS": str(REPO / "assets")})
    [expected] = [json.loads(line) for line in checkout.stdout.splitlines() if line.startswith("{")]
    assert answer["faces"] == expected["faces"] and answer["decision"] == expected["decision"]


def test_missing_detector_files_are_one_line_that_says_where_it_looked(installed, user_home, photo, tmp_path):
    env = {**user_home, "XDG_CACHE_HOME": str(tmp_path / "empty-cache")}
    result = _run([str(installed / "gate-cli"), "test-image", str(photo)], cwd=tmp_path, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"searched {tmp_path / 'empty-cache' / 'maskgate' / 'assets'}" in line and "gate-cli assets fetch" in line


def test_the_packaged_contract_carries_no_absolute_path():
    """A contract travels to other machines: no development machine's folders in it."""
    from gate.models import default_model_path

    def strings(node):
        if isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for value in node:
                yield from strings(value)
        elif isinstance(node, str):
            yield node

    contract = json.loads(default_model_path().with_suffix(".json").read_text())
    assert [s for s in strings(contract) if s.startswith(("/", "~")) or s[1:3] == ":\\"] == []
