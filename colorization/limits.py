"""Bounds on what a file a user hands us may make the program allocate, in one place.

Every file format the project opens is untrusted (photos, videos, checkpoints, ONNX models,
shard packs, hint files, uploads): each is checked against these bounds from what it
declares (header sizes, declared shapes, compressed and uncompressed sizes) before anything
of that size is allocated. Importing this module costs nothing (no torch), so the command
line can state them in ``--help``.
"""

#: the largest image (width x height) decoded by default, in training and ``colorize``;
#: checked on the file's header, before any pixel is decoded (decompression bombs)
DEFAULT_MAX_PIXELS = 200_000_000

#: the largest working size (the network input's shorter side, px) a checkpoint, an ONNX
#: model or ``--size`` may ask for
MAX_SIZE = 16384
