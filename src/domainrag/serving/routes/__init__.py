"""The HTTP API's routers, one per area: meta (health, playground), catalogue views, app completions,
and the OpenAI-compatible endpoints. :func:`domainrag.serving.api.create_api` mounts them."""
