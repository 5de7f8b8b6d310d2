"""Models of 2.5D images, training runs, evaluations and predictions."""
from .images import Image25D
from .predictions import Prediction
from .training import DatasetSplit, Evaluation, FoldRun, TrainingRun

__all__ = ["DatasetSplit", "Evaluation", "FoldRun", "Image25D", "Prediction", "TrainingRun"]
