"""ASGI applications the tests serve with uvicorn + wskit, and the harness that runs uvicorn."""
