"""The product's settings plus the two reference views of the load benchmark.

Only the gunicorn processes of a benchmark run use this module; the product API is unchanged
and mounted as usual, the references live under /bench/ and are no part of the product.
"""

from budgeting_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.load.urls"
# The references are API endpoints like the product's: the same middleware runs for them.
API_PATH_PREFIXES = (*API_PATH_PREFIXES, "/bench/")  # noqa: F405
