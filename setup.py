"""The C modules, beside pyproject.toml (which holds everything else): the quick
confirmation of canonical JSON that `trailseal verify` runs per event, and RFC 6962
hashing over many values at once (OpenSSL's SHA-256, as hashlib's). Both optional:
without a C compiler (or OpenSSL's headers, for the second) the install goes on, and the
same work runs in Python, slower."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "trailseal.integrity._jcs",
            sources=["src/trailseal/integrity/_jcs.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        Extension(
            "trailseal.integrity._rfc6962",
            sources=["src/trailseal/integrity/_rfc6962.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
