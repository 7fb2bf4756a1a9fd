"""otsec: a passive security monitor for industrial (OT) networks."""

__version__ = "0.2.0"
