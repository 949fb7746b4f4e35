"""maskgate runtime: camera → faces → mask labels → decision → relay + event.

This package is what runs on the door's Raspberry Pi. It must never import TensorFlow or
Keras: inference goes through LiteRT (see :mod:`gate.litert`).
"""

__version__ = "0.1.0"
