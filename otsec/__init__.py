"""otsec: a passive security monitor for industrial (OT) networks."""

__version__ = "0.1.0"
