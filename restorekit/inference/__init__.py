"""Running restoration models on whole photographs: tiled inference with seam-free blending."""
