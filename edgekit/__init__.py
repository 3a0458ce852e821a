"""edgekit: from a trained model to a verified deployment on edge boards.

The public API is small on purpose: :func:`build` runs the whole pipeline and
returns a :class:`~edgekit.report.Report`; everything else is reached through
the ``edgekit`` command line.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "build"]


def build(*args, **kwargs):  # noqa: D103 - documented in edgekit.pipeline.build
    from edgekit.pipeline import build as _build

    return _build(*args, **kwargs)
