"""Data: image files, folders, crops and augmentation, MATLAB bicubic, degradations, datasets."""
