"""Datasets, patients, studies, series, volumes, labels, imports and crop boxes."""
