"""What writes reports: evaluation, plots, the HTML report, the worklist, overlays, embedded
images and prediction output (plain and sharded)."""
