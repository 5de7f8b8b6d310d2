"""Models of 2.5D images, training runs, evaluations and predictions."""
from .dicom_node import DicomResult, DicomSend, ReceivedInstance, ReceivedStudy
from .images import Image25D
from .predictions import Prediction
from .training import DatasetSplit, Evaluation, FoldRun, TrainingRun

__all__ = ["DatasetSplit", "DicomResult", "DicomSend", "Evaluation", "FoldRun", "Image25D", "Prediction",
           "ReceivedInstance", "ReceivedStudy", "TrainingRun"]
