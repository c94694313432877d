"""What only fitting a model needs: training, checkpoints, augmentation, shifts, scope and
population fitting, distributed runs and export. PyTorch lives here; the runtime (predict,
serve, dicom-node) imports nothing from this package."""
