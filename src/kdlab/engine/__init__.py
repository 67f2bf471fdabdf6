"""The one training engine: `Trainer.fit` (engine.trainer) trains a `Stage` (engine.stage),
`run_stages` (engine.stages) runs several; checkpoints, logs, precision, torchrun and the
optimisers are the engine's too."""
