"""The test suite (a regular package, so that `tests.*` is this folder and never a package of the same name
that a dependency installs into site-packages)."""
