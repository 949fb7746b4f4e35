"""The installer's live view: the camera with what the gate sees drawn on it, and tuning figures.

Off by default (``[preview] enabled``). The daemon builds a :class:`~gate.preview.server.PreviewServer`
from the settings and hands its :class:`~gate.preview.feed.PreviewFeed` to the gate's loop, which
offers each frame and decision to it without ever waiting; the server draws and encodes only what a
page asks for. The web server is imported only when the preview is on.
"""
