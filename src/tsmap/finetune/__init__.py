"""Stage 1 of the paper: the frame ConvNet fine-tuned TSN-style on the user's classes.

- ``data``: the training inputs (K snippets a video, multi-scale corner crops, flips).
- ``train``: the snippet classifier, its training loop, the checkpoint ``tsmap extract
  --weights`` reads, and where a run writes it (one folder per official split).
- ``provenance``: what a fine-tuned ConvNet was trained on, and the checks that refuse it
  for test videos it saw (at extraction, and at training or scoring a split's heads).

Its floor lies with ``tsmap.training`` (whose resumable state it uses), above the frame
features (``tsmap.frames``) and the store (``tsmap.videomap``), below ``tsmap.steps``.
"""
