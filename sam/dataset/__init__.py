"""The dataset layer: labels and objects, the project's SQLite store, imports and exports.

It may use the engine (masks, image reading); the engine never imports it, so ``import sam``
stays free of SQLite. Modules: :mod:`.annotations` (labels, objects and images: the one model
the page, the store and the exporters share), :mod:`.colors` (label colours and the palette),
:mod:`.store` (the annotation database), :mod:`.imports` (PNG masks and COCO JSON read as
masks), :mod:`.export` (every exporter; ``python -m sam.export``).
"""
