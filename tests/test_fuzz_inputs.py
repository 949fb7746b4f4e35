"""Property-based fuzzing of the two parsers that take outside input: the image decoder and the
settings loader. Whatever the bytes, the answer is a value or our one-line error, never a
traceback (any other exception fails the test). Kept fast: modest example counts, no deadline."""

from __future__ import annotations

import struct

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate.errors import ConfigError, ImageError
from gate.preprocess import DEFAULT_MAX_PIXELS, decode_image_rgb
from gate.settings import Settings, load_settings, parse_settings

FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # nothing written into the checkout


def _encoded() -> list[bytes]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    return [cv2.imencode(ext, image)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".webp", ".gif", ".tiff", ".ppm")]


ENCODED = _encoded()


def _decode_or_refuse(data: bytes) -> None:
    try:
        image = decode_image_rgb(data, "fuzz", max_pixels=DEFAULT_MAX_PIXELS)
    except ImageError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz: ")
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= DEFAULT_MAX_PIXELS


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    _decode_or_refuse(data)


@FUZZ
@given(st.sampled_from(ENCODED), st.data())
def test_truncated_and_corrupted_images(original, data):
    cut = data.draw(st.integers(0, len(original)))
    mutated = bytearray(original[:cut])
    for _ in range(data.draw(st.integers(0, 8))):
        if mutated:
            mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    _decode_or_refuse(bytes(mutated))


@FUZZ
@given(st.sampled_from(ENCODED), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_headers_claiming_any_size(original, width, height):
    """Dimensions patched into the header, as a hostile or broken file would claim them."""
    data = bytearray(original)
    if data[:4] == b"\x89PNG":
        data[16:24] = struct.pack(">II", width, height)
    elif data[:2] == b"BM":
        data[18:26] = struct.pack("<ii", width % 2**31, -(height % 2**31))
    elif data[:3] == b"GIF":
        data[6:10] = struct.pack("<HH", width % 2**16, height % 2**16)
    elif data[:2] == b"\xff\xd8":
        sof = data.find(b"\xff\xc0")
        if sof > 0:
            data[sof + 5 : sof + 9] = struct.pack(">HH", height % 2**16, width % 2**16)
    _decode_or_refuse(bytes(data))


# -- settings -----------------------------------------------------------------------------------

KEYS = {name: list(field.annotation.model_fields) for name, field in Settings.model_fields.items()}
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.text(max_size=20),
                    st.lists(st.integers(-5, 5), max_size=5), st.lists(st.floats(-2, 2), max_size=5))
SECTION = st.sampled_from(sorted(KEYS)) | st.text(min_size=1, max_size=8)


@st.composite
def settings_dicts(draw) -> dict:
    data: dict = {}
    for section in draw(st.lists(SECTION, max_size=4)):
        if draw(st.booleans()):
            keys = st.sampled_from(KEYS.get(section) or ["x"]) | st.text(min_size=1, max_size=8)
            data[section] = draw(st.dictionaries(keys, SCALARS | st.dictionaries(st.text(max_size=5), SCALARS, max_size=2), max_size=4))
        else:
            data[section] = draw(SCALARS)
    return data


@st.composite
def environments(draw) -> dict:
    names = [f"MASKGATE__{section.upper()}__{key.upper()}" for section, keys in KEYS.items() for key in keys]
    names += ["MASKGATE__", "MASKGATE____", "MASKGATE__GATE", "MASKGATE__NOPE__X", "MASKGATE__MQTT__TLS__ENABLED"]
    return draw(st.dictionaries(st.sampled_from(names), st.text(max_size=12) | st.sampled_from(["0", "17", "none", "[0,", "[]", "{}", "true"]), max_size=4))


@FUZZ
@given(settings_dicts(), environments())
def test_random_settings_and_overrides(data, environ):
    try:
        result = parse_settings(data, environ=environ, source="fuzz.toml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml is invalid (")
        return
    assert isinstance(result, Settings)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if np.isfinite(value) else ("nan" if np.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(KEYS)), st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
       st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(), st.text(max_size=15), st.lists(st.floats(-2, 2), max_size=4)), max_size=4),
       max_size=4))
def test_random_toml_files(tmp_path_factory, tables):
    path = tmp_path_factory.mktemp("toml") / "settings.toml"
    text = "".join(f"[{name}]\n" + "".join(f"{key} = {_toml_value(v)}\n" for key, v in table.items()) for name, table in tables.items())
    path.write_text(text, encoding="utf-8")
    try:
        load_settings(path, environ={})
    except ConfigError as exc:
        assert str(exc).startswith(str(path))


@FUZZ
@given(st.binary(max_size=512) | st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"[gate]\nid = \"\xff\""]).flatmap(lambda p: st.binary(max_size=64).map(lambda b: p + b)))
def test_random_bytes_as_a_settings_file(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "settings.toml"
    path.write_bytes(data)
    try:
        load_settings(path, environ={})
    except ConfigError as exc:
        assert str(exc).startswith(str(path))


def test_the_cli_answers_random_files_with_one_line_each(tmp_path, capsys):
    """The whole test-image path on undecodable files: exit 1, one JSON line per file, no traceback."""
    from gate.cli import main

    rng = np.random.default_rng(7)
    files = []
    for index, original in enumerate(ENCODED):
        path = tmp_path / f"f{index}.bin"
        path.write_bytes(original[: rng.integers(1, len(original) // 2)] + rng.bytes(16))
        files.append(path)
    status = main(["test-image", "--json", "--assume-face", *map(str, files)])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert status in (0, 1) and len(lines) == len(files)
