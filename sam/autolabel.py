"""``python -m sam.autolabel --model M --images DIR (--everything | --text "dog. cat.")
[--db PATH] [--ray ...]``: the command line of :mod:`sam.dataset.autolabel`, beside
``python -m sam.precompute``."""

import sys

from sam.dataset.autolabel import main

if __name__ == "__main__":
    sys.exit(main())
