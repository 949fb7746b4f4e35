"""Vision: camera frame → faces with stable track ids. Each module can be read on its own:

* :mod:`gate.vision.detector`: the facade the daemon and ``gate-cli test-image`` use;
* :mod:`gate.vision.stream`: the streaming search (motion gate, following, the full-pass schedule);
* :mod:`gate.vision.search`: the stateless search (proposal → confirmation → second opinion → tiles);
* :mod:`gate.vision.tracker`: the one tracker, whose ids the stream, the policy and the events share;
* :mod:`gate.vision.blazeface`: MediaPipe's BlazeFace-architecture models (anchors, decoding, merging);
* :mod:`gate.vision.imageops` and :mod:`gate.vision.geometry`: image operations and box arithmetic
  (the one IoU).

The face record they pass on is :class:`gate.types.Detection`. No imports here, so :mod:`gate.types`
can use :mod:`gate.vision.geometry` without loading the models' code.
"""
