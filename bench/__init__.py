"""The benchmark harness: CLI, metrics, timing, statistics, PSNR analysis and reports.

``bench`` uses ``methods`` and ``datasets``; neither knows of ``bench``.
"""

__version__ = "0.1.0"
