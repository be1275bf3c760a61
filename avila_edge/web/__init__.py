"""The gateway's web server: REST API with logins and roles, live stream, console files, status, metrics,
health, OpenAPI document, HTTPS (see ``docs/api.md``)."""
