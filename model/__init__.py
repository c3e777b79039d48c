"""The TCMR model: backbone, SMPL layer, temporal encoder, regressor, losses, metrics, checkpoints."""
