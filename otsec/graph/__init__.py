"""The communication graph (edges between assets) and its networkx form."""

from otsec.graph.edges import Edge, edge_id, merged_edges, to_networkx

__all__ = ["Edge", "edge_id", "merged_edges", "to_networkx"]
