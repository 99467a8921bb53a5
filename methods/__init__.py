"""Method adapters: one per segmentation method, all behind ``Method.segment``."""

from methods.base import Method, Segmentation, get_method, methods

__all__ = ["Method", "Segmentation", "get_method", "methods"]
