"""maskgate runtime: camera → faces → mask labels → decision → relay + event.

This package is what runs on the door's Raspberry Pi. It must never import TensorFlow or
Keras: inference goes through LiteRT (see :mod:`gate.litert`).
"""

import os

__version__ = "0.1.0"

# FFmpeg, inside OpenCV, prints its decoding errors ("[png @ 0x…] Invalid PNG signature") straight to
# stderr, from the camera's thread, past logging; the camera reports what failed in its own words.
# OpenCV reads this once, at its first video, so it is set before any: quiet unless the operator
# asks for FFmpeg's own lines (OPENCV_FFMPEG_LOGLEVEL=16, its errors).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
