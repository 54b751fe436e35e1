"""The training room, shared by fixed training and the search.

`step`: the child optimiser, the loss seam (head + cross-entropy + extra loss terms) and
the distributed train step. `shared_update`: --shared_update=taken, the optimiser's step
on only the candidates a one-shot step's architecture ran. `loop`: restore-or-start, the
epoch runner with its NaN stop, and the run log around checkpoints. `checkpoints`: every
restore from a run's checkpoints. `schedules`: warmup + Eq. 6. `teachers`: what
--distill_from names, loaded. `distill`: the distillation terms. `fixed`: training from
scratch and evaluation. `set_quality`: QAN / QAN++ on a frozen embedder.
"""
