"""The learn-then-protect baseline: the learned model and how it is learned."""

from otsec.baseline.model import Baseline, BaselineError, edge_key

__all__ = ["Baseline", "BaselineError", "edge_key"]
