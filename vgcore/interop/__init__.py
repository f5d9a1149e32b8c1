"""Meeting users where they are: PyTorch networks, data files and TensorBoard.

================  ==========================================================================
module            what
================  ==========================================================================
torch_bridge      :func:`~vgcore.interop.torch_bridge.from_torch` /
                  :func:`~vgcore.interop.torch_bridge.to_torch`: an ``nn.Sequential`` MLP
                  to a :class:`vgcore.MLP` and back, weights, statistics and mode included
                  (needs PyTorch: ``pip install "vgcore[torch]"``)
files             :func:`~vgcore.interop.files.load`: features and labels from ``.npz``,
                  ``.npy`` pairs, ``.csv`` / ``.tsv`` and ``.parquet`` files, validated, with
                  the file's SHA-256 (``vg.datasets.load(path)`` calls it)
tensorboard       :class:`~vgcore.interop.tensorboard.TensorBoardWriter`, the ``vg.fit``
                  callback :class:`~vgcore.interop.tensorboard.TensorBoard` and
                  :func:`~vgcore.interop.tensorboard.write_run`: the gradient flow as
                  TensorBoard event files (needs tensorboardX: ``pip install
                  "vgcore[tensorboard]"``)
================  ==========================================================================

The optional dependencies are imported only when a function that needs them is called.
"""
