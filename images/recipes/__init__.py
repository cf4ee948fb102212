"""Image recipes: each module ``<name>.py`` defines ``RECIPE`` (an images.build.Recipe)."""
