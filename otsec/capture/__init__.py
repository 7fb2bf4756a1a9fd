"""Packet sources: capture files are read by the compiled core; the live ring is set up here."""

from otsec._core import CaptureError

__all__ = ["CaptureError", "NothingAnalysed"]


class NothingAnalysed(Exception):
    """No input gave a packet to analyse: a clean-looking empty result would be a lie."""
