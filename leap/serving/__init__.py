"""Serving an exit-enabled model.

* :mod:`leap.serving.model`: :class:`~leap.serving.model.ExitSentenceTransformer`, a
  ``SentenceTransformer`` whose first module runs the layers with the exit rule;
* :mod:`leap.serving.onnx_runtime` and :mod:`leap.serving.onnx_export`: the same rule over
  ONNX Runtime depth segments (the ``onnx`` extra);
* :mod:`leap.serving.encoder`: the batching loop and encode methods both engines share;
* :mod:`leap.serving.sources`: model references (folder, hub id, packaged model).
"""
