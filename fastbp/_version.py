"""fastbp's version: one place, which modules below the package read without importing it."""
__version__ = "0.1.0"
