"""Running a classifier over 48x48 face crops: onnxruntime (the default, no PyTorch) or PyTorch
(``backend="torch"``, the ``train`` extra), the ONNX export that makes the shipped graphs, and
int8 quantisation.

- :mod:`~ferkit.runtime.graph`: the graph's contract (input, output, metadata)
- :mod:`~ferkit.runtime.backends`: the backend interface, batching and flip TTA
- :mod:`~ferkit.runtime.onnx_backend`, :mod:`~ferkit.runtime.torch_backend`: the two backends
- :mod:`~ferkit.runtime.loader`: a model reference -> a backend and the model's card
- :mod:`~ferkit.runtime.export`, :mod:`~ferkit.runtime.quantize`: graphs from weights (PyTorch)
"""

# What runs a model: onnxruntime on the float graph (the default), onnxruntime on a shipped
# model's int8 graph, or PyTorch on the weights. Here, not in backends, so the CLI can offer them
# without importing numpy.
BACKENDS = ("onnx", "onnx-int8", "torch")
