"""Pure renderers: settings + catalog (+ plain secret values) -> the host bundle's file texts.

Never imports pulumi (a test enforces it): the Pulumi components, the ops CLI's offline
``plan`` and the tests all call the same functions.
"""

from bankflow_infra.render.bundle import render_bundle
from bankflow_infra.render.managed import ManagedCache, ManagedDatabase, ManagedServices, SharedUploads
from bankflow_infra.render.model import (
    Bundle,
    BundleFile,
    BundleInputError,
    BundleSecrets,
    CloudflareRanges,
    NginxParams,
)

__all__ = [
    "Bundle",
    "BundleFile",
    "BundleInputError",
    "BundleSecrets",
    "CloudflareRanges",
    "ManagedCache",
    "ManagedDatabase",
    "ManagedServices",
    "NginxParams",
    "SharedUploads",
    "render_bundle",
]
