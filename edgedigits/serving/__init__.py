"""Serving: the models over the Open Inference Protocol v2 (KServe), OVMS-compatible.

``models`` holds the KServe models (a predictor per loaded model, the ``digit-reader``
transformer in front); ``server`` runs them; ``rest`` the REST details; ``loadtest`` the
serving benchmark. The OVMS model repository they serve from is laid out by
:mod:`edgedigits.model_repository` (shared with conversion, no server imports).
"""
