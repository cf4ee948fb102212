"""Transparent checkpoint/restart into SCM (the first paper): see checkpointer.py for the
policy, store.py for the on-media format, state.py for what an image holds of a process."""
from guestkernel.checkpoint.checkpointer import Checkpointer, CheckpointStats
from guestkernel.checkpoint.store import CorruptImage, ImageStore, ScmMedium

__all__ = ["Checkpointer", "CheckpointStats", "CorruptImage", "ImageStore", "ScmMedium"]
