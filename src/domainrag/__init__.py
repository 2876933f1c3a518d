"""domainrag: fully custom Retrieval-Augmented Generation on proprietary domain data.

Layers (one subpackage each): ``storage`` (data lake + catalogue), ``data`` (loaders, chunking,
dataset formats), ``training`` (jobs), ``index`` (vector stores), ``retrieval``, ``serving``
(models, RAG apps, HTTP API), ``evaluation`` and ``cli``.
"""

__version__ = "0.1.0"
