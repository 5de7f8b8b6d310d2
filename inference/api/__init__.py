"""Inference's API: runs, evaluations, verdicts (mounted under /api/ by ``api.urls``)."""
