"""Prefect-free domain logic: dataset readers, joints, crops, occlusion, features, windows."""
