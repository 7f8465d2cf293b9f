"""Training and evaluation: `trainer.train_and_evaluate(config, workdir)` is the entry point."""
