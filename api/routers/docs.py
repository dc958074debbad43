"""The API's interactive documentation at /docs, entirely from this server.

Swagger UI comes from the Python package swagger-ui-py (its static files, mounted at
/docs-assets by `create_app`); FastAPI's own /docs would load it from a CDN and run an
inline script, which a strict Content-Security-Policy and an offline network both refuse.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.routers.ops import STATIC_DIR

#: Swagger UI's files as the package ships them (JavaScript bundle, CSS, icons).
SWAGGER_UI_DIR = Path(swagger_ui.__file__).parent / "static"
DOCS_PAGE = STATIC_DIR / "docs" / "index.html"

router = APIRouter()


@router.get("/docs", include_in_schema=False)
async def docs() -> FileResponse:
    return FileResponse(DOCS_PAGE)
