"""Shipped UNet2DS weights (``synthetic.pt``, float16) and their training metadata (``synthetic.json``)."""
