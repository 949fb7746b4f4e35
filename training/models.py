"""Model presets. Every model starts with Rescaling(1/255): its input is raw RGB in [0, 255].

* ``seed`` — the original project's network, layer for layer, for a like-for-like baseline.
* ``compact`` — what a Raspberry Pi runs: a small MobileNet-v1-style stack (3×3 stem at
  stride 2, seven depthwise-separable blocks with BN + ReLU6, down to 6×6 at 96 px, global
  average pooling, dropout, softmax). 69.7 k parameters, 10.1 M MACs at 96 px.

Why ``compact`` and not its neighbours: ``maskgate-train compare`` trained the three widths
for 10 epochs on 400/150/150 images per class of the 3-class synthetic set (96 px, same seed):

=========  ======  =======  ============  =========
variant    params  MACs     best val acc  test acc
=========  ======  =======  ============  =========
compact-s  21.8 k   4.9 M   0.416         0.489
compact    69.7 k  10.1 M   0.602         0.616
compact-l  146 k   18.4 M   0.622         0.582
=========  ======  =======  ============  =========

compact-s is clearly capacity-limited; compact-l costs 1.8× the MACs for no clear gain.
(Short runs: absolute numbers are far below a full run's; only the ranking is the point.)

* ``mobilenetv2-0.35`` / ``mobilenetv2-0.5`` — Keras' MobileNetV2 base (width 0.35 or 0.5) with
  a small head (global average pooling, dropout, softmax), started from ImageNet weights: what
  three from-scratch architectures could not learn from a few thousand real photos, a backbone
  that has seen a million real ones brings. Trained in two stages (:mod:`training.train`): the
  head on frozen features, then the top blocks with BatchNorm kept in inference mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers

from gate.errors import DatasetError


@dataclass(frozen=True)
class Recipe:
    """How a preset trains: what train.py uses when the user does not override a value."""

    input_size: int
    batch_size: int
    learning_rate: float
    steps_per_epoch: int | None  # None: one pass over the training split
    activation: str  # "sigmoid" (one unit = P(classes[1])) or "softmax"
    augmentation: str  # geometric strength of training.augment ("original" or "door")


BACKBONE_RECIPE = Recipe(input_size=96, batch_size=32, learning_rate=2e-4, steps_per_epoch=None,
                         activation="softmax", augmentation="real-door")
SEED_RECIPE = Recipe(input_size=224, batch_size=20, learning_rate=1e-4, steps_per_epoch=100,
                     activation="sigmoid", augmentation="original")
COMPACT_RECIPE = Recipe(input_size=96, batch_size=32, learning_rate=2e-3, steps_per_epoch=None,
                        activation="softmax", augmentation="door")

#: Depthwise-separable blocks per compact variant: (output channels, stride).
_COMPACT_BLOCKS = {
    "compact-s": (16, ((24, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2))),
    "compact": (24, ((32, 1), (48, 2), (48, 1), (96, 2), (96, 1), (160, 2), (160, 1))),
    "compact-l": (32, ((48, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))),
}

#: Backbone presets → MobileNetV2 width multiplier (alpha).
BACKBONES = {"mobilenetv2-0.35": 0.35, "mobilenetv2-0.5": 0.5}
#: The backbone's own name inside a backbone model (training.train freezes and unfreezes it by name).
BACKBONE_NAME = "backbone"

PRESETS = ("seed", *_COMPACT_BLOCKS, *BACKBONES)


def recipe(preset: str) -> Recipe:
    _check_preset(preset)
    if preset in BACKBONES:
        return BACKBONE_RECIPE
    return SEED_RECIPE if preset == "seed" else COMPACT_RECIPE


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r} (choose from {', '.join(PRESETS)})")


def make_model(preset: str, num_classes: int, input_size: int | None = None,
               backbone_weights: str | None = None) -> keras.Model:
    """An uncompiled model of ``preset`` for ``num_classes`` classes at ``input_size`` px (square).

    ``backbone_weights`` (backbone presets only): a path to Keras' ``*_no_top.h5`` file, ``"imagenet"``
    (Keras downloads it) or None (random start)."""
    _check_preset(preset)
    size = input_size or recipe(preset).input_size
    if preset == "seed":
        return _seed_model(num_classes, size)
    if preset in BACKBONES:
        return _backbone_model(preset, num_classes, size, backbone_weights)
    if backbone_weights:
        raise ValueError(f"--backbone-weights needs a backbone preset ({', '.join(BACKBONES)}), not {preset}")
    return _compact_model(preset, num_classes, size)


def compile_model(model: keras.Model, preset: str, learning_rate: float,
                  label_smoothing: float = 0.0, total_steps: int | None = None) -> keras.Model:
    """Optimizer and loss of the preset: RMSprop + binary CE (seed, constant rate like the original),
    Adam + categorical CE (compact; cosine-decayed over ``total_steps`` when given)."""
    if recipe(preset).activation == "sigmoid":
        model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
                      loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
                      metrics=["accuracy"])
        return model
    rate = learning_rate
    if total_steps:
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps, alpha=0.05)
    # Label smoothing needs one-hot targets; train.py feeds them when smoothing is on.
    loss = (keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing) if label_smoothing
            else keras.losses.SparseCategoricalCrossentropy())
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=rate), loss=loss, metrics=["accuracy"])
    return model


def _seed_model(num_classes: int, size: int) -> keras.Model:
    """The original: four conv/max-pool stages, dropout, dense 512, one sigmoid unit."""
    if num_classes != 2:
        raise DatasetError(
            f"the seed preset is the original binary model (with_mask/without_mask); "
            f"it cannot learn {num_classes} classes — use --preset compact"
        )
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(512, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="seed",
    )


def _conv_bn(x, filters: int, stride: int, name: str):
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x)


def _separable_block(x, filters: int, stride: int, name: str):
    """Depthwise 3×3 then pointwise 1×1, each with BN + ReLU6 (MobileNet v1 block; int8-friendly)."""
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu6")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_pw_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_pw_relu6")(x)


def _compact_model(preset: str, num_classes: int, size: int) -> keras.Model:
    stem, blocks = _COMPACT_BLOCKS[preset]
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = _conv_bn(x, stem, 2, "stem")
    for index, (filters, stride) in enumerate(blocks, start=1):
        x = _separable_block(x, filters, stride, f"block{index}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name=preset.replace("-", "_"))


def _backbone_model(preset: str, num_classes: int, size: int, weights: str | None) -> keras.Model:
    """MobileNetV2 base + head. Input raw RGB [0, 255], scaled to [-1, 1] inside (as ImageNet training did)."""
    if size < 32:
        raise ValueError(f"{preset} needs an input of at least 32 px (got {size})")
    if weights not in (None, "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise DatasetError(f"backbone weights {path} do not exist (give a path, 'imagenet' or 'none')")
        weights = str(path)
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=BACKBONES[preset],
                                          include_top=False, weights=weights)
    base = keras.Model(base.input, base.output, name=BACKBONE_NAME)
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = base(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name=preset.replace("-", "_").replace(".", ""))


def set_backbone_trainable(model: keras.Model, from_layer: str | None) -> None:
    """Freeze the whole backbone (``from_layer`` None) or unfreeze it from the layer named
    ``from_layer`` on (e.g. ``block_13_expand``). BatchNorm layers always stay frozen, so they keep
    ImageNet's statistics and run in inference mode: fine-tuning on a few thousand images must
    not re-estimate them (the Keras transfer-learning guide's advice)."""
    base = model.get_layer(BACKBONE_NAME)
    names = [layer.name for layer in base.layers]
    if from_layer is not None and from_layer not in names:
        raise ValueError(f"the backbone has no layer {from_layer!r}")
    start = names.index(from_layer) if from_layer is not None else len(names)
    base.trainable = True
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= start and not isinstance(layer, layers.BatchNormalization)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass (conv, depthwise, separable and dense layers)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        if not isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D,
                                  layers.Dense)):
            continue
        in_shape, out_shape = layer.input.shape, layer.output.shape
        positions = 1
        for dim in out_shape[1:-1]:
            positions *= dim
        in_channels, out_channels = in_shape[-1], out_shape[-1]
        if isinstance(layer, layers.Dense):
            total += positions * in_channels * out_channels
            continue
        kernel_area = layer.kernel_size[0] * layer.kernel_size[1]
        if isinstance(layer, layers.DepthwiseConv2D):
            total += positions * kernel_area * in_channels * layer.depth_multiplier
        elif isinstance(layer, layers.SeparableConv2D):
            depthwise = in_channels * layer.depth_multiplier
            total += positions * (kernel_area * depthwise + depthwise * out_channels)
        else:
            total += positions * kernel_area * (in_channels // layer.groups) * out_channels
    return int(total)
