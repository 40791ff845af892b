"""The Segment-compatible ingestion API of `touchflow serve`: write keys (`keys.py`), request
bodies read safely (`body.py`), messages checked against the import contract (`messages.py`),
written in one transaction per request (`write.py`), and the Starlette routes (`routes.py`)."""
