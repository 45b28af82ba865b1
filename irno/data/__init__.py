"""The data layer: The Well's files and what the training reads from them; knows no model.

- `irno.data.wellfile`  writing The Well's HDF5 format (the simulator and the tests use it)
- `irno.data.well`      reading a dataset through The Well's own `WellDataset`
- `irno.data.download`  downloading a dataset, or indexing a local copy in place, with its manifest
- `irno.data.store`     the prepared, normalised, memory-mapped store of a split
- `irno.data.batches`   which samples form each batch, and reading them
"""
