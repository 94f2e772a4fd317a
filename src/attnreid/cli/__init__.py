"""The ``attnreid`` command line."""
