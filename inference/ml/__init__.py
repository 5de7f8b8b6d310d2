"""The Django-free imaging and learning core: volumes, geometry, DICOM reading, crop boxes,
2.5D arrays, models, training and metrics. Nothing here imports Django."""
