"""The napari-instseg library: numpy, scipy, scikit-image, torch and zarr; never Qt or napari."""
