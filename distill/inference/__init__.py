"""Inference: what a trained model does for a user, outside any training loop.

generate.py (new sounds from a prior), codes.py (the code editor's operations and the
codes file), one_shot.py (where a generated sound starts and ends), spec.py (what a
generate request asks for). Below training (a prior run measures its clips with these),
above models.
"""
