"""``python -m methods.unet2ds train --dataset synthetic --out methods/unet2ds/weights/synthetic.pt``."""

import sys

from methods.unet2ds.train import main

sys.exit(main())
