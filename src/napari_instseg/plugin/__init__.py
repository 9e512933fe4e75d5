"""napari-facing part of napari-instseg: widgets, reader/writer and sample data."""
