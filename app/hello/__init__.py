"""The course's first endpoint, laid out like every later feature: schemas, service, routes."""
