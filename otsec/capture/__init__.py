"""Packet sources: capture files and link-layer decoding."""

from otsec.capture.files import CaptureError, CaptureReader
from otsec.capture.linktypes import decode_link, format_mac

__all__ = ["CaptureError", "CaptureReader", "decode_link", "format_mac"]
