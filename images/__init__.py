"""Reproducible ext2 guest images for emu (see images/build.py)."""

from .build import (  # noqa: F401
    ImageError,
    Recipe,
    build_image,
    default_image,
    extract,
    image_key,
    list_recipes,
    read_file,
    staged_dataset,
)
