"""Packet sources: capture files are read by the compiled core; the live ring is set up here."""

from otsec._core import CaptureError

__all__ = ["CaptureError"]
