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
#: model or ``--size`` may ask for: a working input is then at most 4096 x 16384 px (the longer
#: side is at most 4x the shorter), 256 MiB per float32 channel; training crops are far smaller
MAX_SIZE = 4096

#: the largest ONNX file colorize opens (bytes): read once, whole, into memory
MAX_ONNX_BYTES = 1 << 30
#: what onnxruntime may allocate for ONNX models (bytes, a process's sessions together): an
#: allocation past it stops the model with an error, not the machine
MAX_ONNX_MEMORY = 8 << 30
