"""The HTTP API: the app factory, its dependencies, the API schemas (apart from the storage
models) and the routes, thin: no SQL in a route."""
