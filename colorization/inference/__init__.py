"""Inference: everything that colours a photo with a trained model, without Lightning or Hydra.

* :mod:`~colorization.inference.model`: a :class:`Colorizer` (normalised L in, normalised ab
  out) from a checkpoint, rebuilt from what the task wrote into it (``checkpoint["inference"]``:
  output space, sampling), or from an exported ONNX model (onnxruntime).
* :mod:`~colorization.inference.fullres`: the photo's own full-resolution L joined with the
  predicted ab, gamut mapping at constant L, in strips of rows.
* :mod:`~colorization.inference.jobs`: inputs, output plans, the batched run over photos.
* :mod:`~colorization.inference.export`: ONNX and ``torch.export`` (.pt2) programs.

``colorize`` / ``colorize-export`` (:mod:`colorization.colorize`) are the command line on top.
A new task or output head touches none of these files: the task says what inference needs
(:meth:`~colorization.tasks.ColorizationModule.inference_spec`), the output space how its
prediction becomes ab (:mod:`colorization.outputs`).
"""
