"""The training library shared by fixed training and the search.

`step`: the child optimiser, the loss seam (head + cross-entropy + extra loss
terms) and the distributed train step. `loop`: restore-or-start, the epoch
runner with its NaN stop, and the run log around checkpoints.
"""
