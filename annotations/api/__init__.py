"""The study store's API (mounted under /api/ by ``api.urls``)."""
