"""The one C module, beside pyproject.toml (which holds everything else): the quick
confirmation of canonical JSON that `trailseal verify` runs per event. Optional: without
a C compiler the install goes on, and the same check runs in Python, slower."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "trailseal.integrity._jcs",
            sources=["src/trailseal/integrity/_jcs.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
