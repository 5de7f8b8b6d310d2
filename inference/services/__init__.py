"""Inference's logic and file I/O: 2.5D images, training, evaluation, verdicts, the demo."""
