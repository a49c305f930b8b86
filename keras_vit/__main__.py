"""`python -m keras_vit ...` runs the `keras-vit` command line (see keras_vit/cli/).

Example:
    python -m keras_vit train --epochs 5
"""

import sys

from keras_vit.cli import main

if __name__ == "__main__":
    sys.exit(main())
