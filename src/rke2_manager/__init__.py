"""rke2-manager: install and scale RKE2 clusters over SSH, one safe operation at a time."""

__version__ = "0.1.0"
