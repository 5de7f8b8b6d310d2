"""Signals the study store sends so that apps above it can react without being imported here.

- ``boxes_changed(sender=CropBox, series=Series, box=CropBox)``: a crop box of ``series`` was saved (sent by
  ``services.boxes.save_box`` after its transaction). ``inference`` rebuilds that scan's 2.5D images
  (``inference/signals.py``, connected in ``InferenceConfig.ready``).
"""
from django.dispatch import Signal

boxes_changed = Signal()
