"""The gateway's routers, one module per resource (as in the FastAPI template's api/routes)."""
