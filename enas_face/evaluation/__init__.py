"""Evaluation in numpy (no TensorFlow): image-pair verification and identification
(verification.py) and set-to-set verification with quality-aware pooling (sets.py)."""
