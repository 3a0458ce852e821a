"""edgekit's hand-written C runtime (package data in ``c/``)."""
