"""Training with PyTorch Lightning: ATIS-style data, the LightningModule, metrics and the CLI."""
