"""Builds the optional C decoder (collector._otlpfast); metadata lives in pyproject.toml.

The extension is optional: when it cannot be compiled, installation still succeeds and the
collector uses the pure-Python flattener (collector.fast_spans.AVAILABLE is False).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collector._otlpfast",
            sources=["collector/_otlpfast.c"],
            extra_compile_args=["-O2", "-std=c11", "-fno-strict-aliasing"],
            optional=True,
        )
    ]
)
