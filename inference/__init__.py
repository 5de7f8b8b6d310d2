"""2.5D images, training runs, the model registry, evaluations and verdicts.

``inference.ml`` is the Django-free imaging and learning core; the rest stores, authorises and
orchestrates it.
"""
