"""``python -m sam.export --db PATH --format coco|yolo|png --out DIR [--polygons]``: the
command line of :mod:`sam.dataset.export`, kept at the name the README documents."""

import sys

from sam.dataset.export import main

if __name__ == "__main__":
    sys.exit(main())
