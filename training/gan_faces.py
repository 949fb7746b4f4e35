"""Synthetic faces from the DCGAN of ``gan-face-generate`` — run in numpy, no PyTorch.

The checkpoint is a PyTorch zip file (``weights/data.pkl`` + raw tensor storages). We read
it with a restricted unpickler that only knows the handful of globals a ``state_dict`` needs,
so nothing in the file can execute code, and we never have to install torch on the
workstation just to make 64×64 faces.
"""

from __future__ import annotations

import collections
import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from gate.errors import AssetError

log = logging.getLogger(__name__)

LATENT_SIZE = 100
FACE_SIZE = 64
_BATCHNORM_EPS = 1e-5
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}
# (conv index, batchnorm index or None) in the generator's nn.Sequential, in order.
_LAYERS = ((0, 1), (3, 4), (6, 7), (9, 10), (12, None))


class _StorageRef:
    """What ``persistent_load`` returns: a typed view of one ``data/<key>`` zip member."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _rebuild_tensor_v2(storage: _StorageRef, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    array = storage.array
    itemsize = array.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        array[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)  # own the memory, contiguous


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a torch ``state_dict`` into numpy arrays, refusing every other global."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, data: bytes) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which a state_dict never needs")

    def persistent_load(self, pid: Any) -> _StorageRef:
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage" or storage_type not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        raw = self._archive.read(f"{self._prefix}data/{key}")
        return _StorageRef(np.frombuffer(raw, dtype=np.dtype(_STORAGE_DTYPES[storage_type]).newbyteorder("<")))


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The generator's weights from a PyTorch zip checkpoint, as float32/int64 numpy arrays."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise AssetError(f"{path}: not a PyTorch zip checkpoint ({exc})") from exc
    with archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if not pickles:
            raise AssetError(f"{path}: no data.pkl inside")
        prefix = pickles[0][: -len("data.pkl")]
        try:
            loaded = _StateDictUnpickler(archive, prefix, archive.read(pickles[0])).load()
        except (pickle.UnpicklingError, KeyError, ValueError) as exc:
            raise AssetError(f"{path}: cannot read checkpoint ({exc})") from exc
    state = loaded.get("netG_state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or "main.0.weight" not in state:
        raise AssetError(f"{path}: no DCGAN generator state_dict (netG_state_dict) found")
    return dict(state)


def _conv_transpose(x: np.ndarray, weight: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """PyTorch ConvTranspose2d (no bias): x (N,Cin,H,W), weight (Cin,Cout,k,k) → (N,Cout,H',W').

    Every input pixel spreads ``x·weight`` over a k×k patch: one matmul makes all patches,
    then k² strided adds place them (col2im).
    """
    n, c_in, h, w = x.shape
    _, c_out, k, _ = weight.shape
    cols = x.transpose(0, 2, 3, 1).reshape(-1, c_in) @ weight.reshape(c_in, -1)
    cols = cols.reshape(n, h, w, c_out, k, k)
    full_h, full_w = (h - 1) * stride + k, (w - 1) * stride + k
    out = np.zeros((n, c_out, full_h, full_w), dtype=np.float32)
    for ky in range(k):
        for kx in range(k):
            out[:, :, ky : ky + stride * h : stride, kx : kx + stride * w : stride] += cols[..., ky, kx].transpose(0, 3, 1, 2)
    return out[:, :, padding : full_h - padding, padding : full_w - padding]


class GanFaceGenerator:
    """DCGAN face generator (64×64 RGB) evaluated with numpy in inference mode."""

    def __init__(self, weights_path: Path) -> None:
        state = load_state_dict(Path(weights_path))
        self._layers: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
        for conv, norm in _LAYERS:
            weight = state[f"main.{conv}.weight"].astype(np.float32)
            if norm is None:
                self._layers.append((weight, None, None))
                continue
            scale = state[f"main.{norm}.weight"] / np.sqrt(state[f"main.{norm}.running_var"] + _BATCHNORM_EPS)
            shift = state[f"main.{norm}.bias"] - state[f"main.{norm}.running_mean"] * scale
            self._layers.append((weight, scale.astype(np.float32)[:, None, None], shift.astype(np.float32)[:, None, None]))
        if self._layers[0][0].shape[0] != LATENT_SIZE or self._layers[-1][0].shape[1] != 3:
            raise AssetError(f"{weights_path}: generator shapes do not match the 100→3 DCGAN")

    def forward(self, latent: np.ndarray) -> np.ndarray:
        """Latent (N,100,1,1) float32 → images (N,3,64,64) float32 in [-1, 1]."""
        x = latent.astype(np.float32)
        for index, (weight, scale, shift) in enumerate(self._layers):
            x = _conv_transpose(x, weight, stride=1 if index == 0 else 2, padding=0 if index == 0 else 1)
            if scale is None:
                return np.tanh(x)
            x = np.maximum(x * scale + shift, 0.0)
        raise AssertionError("unreachable")

    def _to_pixels(self, latent: np.ndarray) -> np.ndarray:
        images = self.forward(latent)
        return np.clip((images + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)

    def generate(self, n: int, seed: int, batch: int = 64) -> np.ndarray:
        """``n`` faces for ``seed`` as RGB uint8 (n, 64, 64, 3); the same seed gives the same faces."""
        latent = np.random.default_rng(seed).standard_normal((n, LATENT_SIZE, 1, 1), dtype=np.float32)
        faces = np.empty((n, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
        for start in range(0, n, batch):
            faces[start : start + batch] = self._to_pixels(latent[start : start + batch])
        return faces

    def stream(self, seed: int, batch: int = 64) -> Iterator[np.ndarray]:
        """Endless faces for ``seed``, one at a time, generated ``batch`` at a time."""
        rng = np.random.default_rng(seed)
        while True:
            yield from self._to_pixels(rng.standard_normal((batch, LATENT_SIZE, 1, 1), dtype=np.float32))
