"""Serving: the digit model over the Open Inference Protocol v2 (KServe), OVMS-compatible.

``repository`` lays out the OVMS model repository (no server imports); ``models`` holds the
KServe models; ``server`` runs them. Only ``models``/``server`` import kserve.
"""
