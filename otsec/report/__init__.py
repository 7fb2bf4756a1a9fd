"""The HTML audit report."""
