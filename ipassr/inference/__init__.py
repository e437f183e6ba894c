"""Running a trained network: the ``StereoSR`` API, the fast memory-bounded path, and export.

| module | what it holds |
| --- | --- |
| ``api`` | ``load_model`` and ``StereoSR``: the one place that picks how a pair runs |
| ``images`` | paths, PIL images, arrays and tensors as batches, and results back in their kind and format |
| ``fast`` | iPASSR's memory-bounded fast forward (plan, stages, chunked attention, fusion) |
| ``video`` | ``super_resolve_video``: a stereo video in resumable segments, split over processes |
| ``export`` | ONNX and TorchScript export |
"""

EXPORT_FORMATS = ("onnx", "torchscript")  # ``export``'s formats, here for the CLI's parser (no torch)
