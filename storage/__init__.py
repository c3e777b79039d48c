"""Zarr feature stores: layout, schema, writer, reader, provenance, import of official db files."""
