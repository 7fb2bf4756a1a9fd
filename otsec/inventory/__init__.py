"""Asset inventory: hosts, their services, roles and passive identification."""

from otsec.inventory.assets import Asset, Identity, Inventory

__all__ = ["Asset", "Identity", "Inventory"]
