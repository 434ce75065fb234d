"""Scoring models: metrics, a model on a data set of face crops (``ferkit eval --data`` FER2013,
image folders, class folders) and a model with its detector on labelled photos. onnxruntime by
default, so none of it needs PyTorch."""
