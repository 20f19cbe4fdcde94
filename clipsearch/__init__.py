"""clipsearch: hybrid text + image search over captioned image collections.

This package holds what every service shares: settings, document and search types,
embedding containers, the fusion formula, errors and the index clients.
"""

__version__ = "0.1.0"
