"""Training (the ``train`` extra: PyTorch): one loop for a laptop CPU, a GPU and a torchrun
cluster (:mod:`~ferkit.train.loop`), its recipe (:mod:`~ferkit.train.config`), batched
augmentation, distillation, distributed helpers, checkpoints, and the report of a finished run."""
