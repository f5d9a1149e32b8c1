"""``vgcore compare --tensorboard DIR``: one TensorBoard run folder per configuration (and
seed), written while the configuration trains, through :mod:`vgcore.interop.tensorboard`.

Each run folder gets what a :class:`vgcore.Recorder` with ``tensorboard=`` writes at every
recorded step (the per-layer fields of :data:`vgcore.interop.tensorboard.DEFAULT_FIELDS`, the
first/last ratios, where a NaN first appeared, and histograms of every layer's weight
gradient at most once per :data:`HISTOGRAM_EVERY` steps), then the training loss of every
step, the held-out loss and accuracy at the last step, and the configuration as text.
"""
from __future__ import annotations

import os
import re

from vgcore.commands._common import CommandError

HISTOGRAM_EVERY = 100


def run_folder(root, index, name, seed=None):
    """``root/<NN>-<name as a folder name>[/seed<k>]``: numbered so that TensorBoard lists the
    configurations in the report's order and two names that differ only in punctuation stay
    apart."""
    slug = re.sub(r"[^A-Za-z0-9.+=-]+", "_", name).strip("_") or "configuration"
    folder = os.path.join(root, f"{index + 1:02d}-{slug}")
    return folder if seed is None else os.path.join(folder, f"seed{seed}")


def check_tensorboard(root, configs, seeds):
    """Before any training: tensorboardX is importable, ``root`` is (or can be made) a
    folder, and none of the run folders about to be written already holds event files (two
    runs' events in one folder draw as one tangled curve)."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise CommandError("--tensorboard: writing TensorBoard files needs tensorboardX: pip "
                           "install \"vgcore[tensorboard]\" (or pip install tensorboardX)") \
            from None
    if os.path.exists(root) and not os.path.isdir(root):
        raise CommandError(f"--tensorboard: {root} exists and is not a folder")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as e:
        raise CommandError(f"--tensorboard: cannot create {root}: {e.strerror or e}") from None
    if not os.access(root, os.W_OK):
        raise CommandError(f"--tensorboard: {root} is not writable")
    several = len(seeds) > 1
    for i, cfg in enumerate(configs):
        for seed in seeds:
            folder = run_folder(root, i, cfg.name, seed if several else None)
            if os.path.isdir(folder) and any(n.startswith("events.out.tfevents")
                                             for n in os.listdir(folder)):
                raise CommandError(f"--tensorboard: {folder} already holds the event files of "
                                   f"an earlier run; choose another folder (e.g. "
                                   f"{os.path.join(root, 'run2')}) or remove it")


def open_writer(s, configs, cfg, seed):
    """The :class:`~vgcore.interop.tensorboard.TensorBoardWriter` of one run (for its
    Recorder), or None without --tensorboard."""
    root = s.get("tensorboard")
    if root is None:
        return None
    from vgcore.interop.tensorboard import TensorBoardWriter
    folder = run_folder(root, configs.index(cfg), cfg.name,
                        seed if len(s["seeds"]) > 1 else None)
    try:
        return TensorBoardWriter(folder, histogram_every=HISTOGRAM_EVERY)
    except (OSError, ValueError) as e:
        raise CommandError(f"--tensorboard: cannot write into {folder}: "
                           f"{getattr(e, 'strerror', None) or e}") from None


def finish_writer(writer, cfg, seed, losses, test, data):
    """Write the run's losses, held-out metrics and configuration, and close the file."""
    if writer is None:
        return
    try:
        n = len(losses)
        for step, v in enumerate(losses):
            writer.add_scalar("loss/train", v, step)
        for k in ("loss", "accuracy"):
            if test.get(k) is not None:
                writer.add_scalar(f"{k}/held_out", test[k], max(n - 1, 0))
        text = {**cfg.as_dict(), "seed": seed, "data": data.description}
        writer.add_text("run/config", "\n\n".join(f"**{k}**: {v}" for k, v in text.items()))
    finally:
        writer.close()
