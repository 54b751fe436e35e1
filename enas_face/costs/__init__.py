"""Cost models: what an architecture costs, for the reward, the budget and the ranking.

    --cost_model   unit     how
    flops          FLOPs    analytic count from the sample and the model config (no TF)
    params         params   analytic trainable-parameter count (no TF)
    measured       ms       batch-1 tf.function latency on this machine (latency.LatencyMeter)
    lut            ms       a latency lookup table's sum over the sample's modules
                            (tools/build_latency_table.py writes the table; nothing is timed)
    tflite         ms       batch-1 latency of the converted TFLite model under LiteRT

`costs.factory.make_cost_model` / `from_config` make one by name (this package itself
imports no TensorFlow, so flags can list the names). Every model maps a sample of the run's
space to one positive float; the rewards (`enas_face.search.rewards`) compare it with --cost_target
in the same unit.
"""
from enas_face.costs.base import COST_MODELS, UNITS, CostModel, FlopsCost, ParamsCost, keras_params

__all__ = ["COST_MODELS", "UNITS", "CostModel", "FlopsCost", "ParamsCost", "keras_params"]
