"""Admin endpoints: ``/api/v2/admin/backups...``, workspace export and import.

Thin resources: each checks the admin token, calls the service and shapes the answer. The work
runs inside the request for now (201/200); chapter 6 moves create, restore, export and import
to Celery jobs calling the same service methods, and these routes will answer 202.
"""

from __future__ import annotations

import base64
import tempfile
import uuid
from typing import IO, Any

from flask import Response, current_app, request
from flask_restx import Namespace
from werkzeug.exceptions import BadRequest, UnsupportedMediaType
from werkzeug.wsgi import wrap_file

from app.api.models import QUERY_ERROR, problem, requires
from app.api.resource import ApiResource
from app.auth.permissions import PLATFORM_ADMIN, Action
from app.backups import backup_service, record_admin_event
from app.backups.schemas import (
    EXAMPLE_BACKUP_ID,
    MODELS,
    backup,
    backup_list,
    backup_to_dict,
    import_result,
    import_to_dict,
    restore_result,
    restore_to_dict,
)
from app.backups.workspace_archive import (
    MEDIA_TYPE,
    export_workspace,
    import_name,
    import_workspace,
)
from app.core.admin import BEARER, platform_admin_only, require_platform_admin
from app.core.errors import ValidationProblem
from app.core.http_cache import WRITE_CACHE_CONTROL, dump_json, json_response, no_content
from app.db import db
from app.db.shards import shard_session
from app.version import __version__
from app.workspaces import workspace_service
from app.workspaces.schemas import EXAMPLE_WORKSPACE_ID

ns = Namespace(
    "admin",
    description="Backups of every database and restore, workspace import (platform "
    "administrators only: to anyone else these answer 404), and workspace export (owners).",
)
for _model in MODELS:
    ns.add_model(_model.name, _model)

TAR = "application/x-tar"
_SPOOL = 8 * 1024 * 1024
_GZIP_TYPES = frozenset({MEDIA_TYPE, "application/x-gzip"})
_UNAUTHORIZED = "No, or an invalid, expired or revoked token (WWW-Authenticate says more)"
_NO_ADMIN = "You are not a platform administrator: the admin endpoints do not exist for you"
_DOWNLOAD_HEADERS = {
    "Content-Length": {"type": "integer", "description": "Bytes of the archive"},
    "ETag": {"type": "string", "description": "The archive's SHA-256, hex, quoted"},
    "Repr-Digest": {"type": "string", "description": "RFC 9530: sha-256=:<base64>:"},
    "Content-Disposition": {"type": "string", "description": "attachment; its file name"},
}
_BACKUP_ID = {"format": "uuid", "x-example": EXAMPLE_BACKUP_ID}


@platform_admin_only
class AdminResource(ApiResource):
    """The admin check runs before everything else, the unknown-parameter check included: to
    anyone but a platform administrator these endpoints look exactly like no endpoint at all."""

    def dispatch_request(self, *args: Any, **kwargs: Any) -> Any:
        require_platform_admin()
        db.session.rollback()  # end the checks' read: on SQLite it would block writers meanwhile
        return super().dispatch_request(*args, **kwargs)


def _admin_responses(not_found: str = _NO_ADMIN) -> Any:
    def document(operation: Any) -> Any:
        operation = ns.response(401, _UNAUTHORIZED, problem)(operation)
        operation = ns.response(404, not_found, problem)(operation)
        return ns.doc(security=BEARER)(operation)

    return document


def _digest_headers(sha256_hex: str) -> dict[str, str]:
    encoded = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
    return {"ETag": f'"{sha256_hex}"', "Repr-Digest": f"sha-256=:{encoded}:"}


def _file_response(file: IO[bytes], size: int, sha256: str, media_type: str, name: str) -> Response:
    """Stream ``file`` (never loaded whole) with its length and digest; not stored by caches:
    it holds every task."""
    response = Response(
        wrap_file(request.environ, file), mimetype=media_type, direct_passthrough=True
    )
    response.content_length = size
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = WRITE_CACHE_CONTROL
    response.headers.update(_digest_headers(sha256))
    return response


@ns.route("/admin/backups")
class BackupCollection(AdminResource):
    @requires(ns, PLATFORM_ADMIN)
    @ns.doc("list_backups", description="Every backup kept in BACKUP_DIR, newest first.")
    @ns.response(200, "The backups", backup_list)
    @ns.response(400, QUERY_ERROR, problem)
    @_admin_responses()
    def get(self) -> Response:
        items = [backup_to_dict(item) for item in backup_service().list()]
        return json_response({"items": items}, cache_control=WRITE_CACHE_CONTROL)

    @requires(ns, PLATFORM_ADMIN)
    @ns.doc(
        "create_backup",
        description="Back up every database (control and shards) with the engine's own online "
        "mechanism (SQLite's backup API, pg_dump -Fc) into one archive; then only the newest "
        "BACKUP_KEEP backups are kept.",
    )
    @ns.response(
        201,
        "Created; Location points at it",
        backup,
        headers={"Location": {"type": "string", "description": "The backup"}},
    )
    @ns.response(400, QUERY_ERROR, problem)
    @_admin_responses()
    @ns.response(
        409,
        "Another backup operation is running, or workspaces kept moving between shards while "
        "the databases were copied (Retry-After)",
        problem,
    )
    def post(self) -> Response:
        created = backup_service().create()
        return json_response(
            backup_to_dict(created),
            201,
            headers={"Location": f"{request.path}/{created.id}"},
            cache_control=WRITE_CACHE_CONTROL,
        )


@ns.route("/admin/backups/<uuid:backup_id>")
@ns.param("backup_id", "The backup id (a UUID)", **_BACKUP_ID)
class BackupItem(AdminResource):
    @requires(ns, PLATFORM_ADMIN)
    @ns.doc("get_backup", description="One backup's metadata.")
    @ns.response(200, "The backup", backup)
    @ns.response(400, QUERY_ERROR, problem)
    @_admin_responses("No such backup; or you are not a platform administrator")
    def get(self, backup_id: uuid.UUID) -> Response:
        return json_response(
            backup_to_dict(backup_service().get(backup_id)), cache_control=WRITE_CACHE_CONTROL
        )

    @requires(ns, PLATFORM_ADMIN)
    @ns.doc("delete_backup", description="Delete a backup (its archive and metadata).")
    @ns.response(204, "Deleted")
    @ns.response(400, QUERY_ERROR, problem)
    @_admin_responses("No such backup; or you are not a platform administrator")
    @ns.response(409, "Another backup operation is running (Retry-After)", problem)
    def delete(self, backup_id: uuid.UUID) -> Response:
        backup_service().delete(backup_id)
        return no_content()


@ns.route("/admin/backups/<uuid:backup_id>/download")
@ns.param("backup_id", "The backup id (a UUID)", **_BACKUP_ID)
class BackupDownload(AdminResource):
    @requires(ns, PLATFORM_ADMIN)
    @ns.doc(
        "download_backup",
        description="The archive, streamed: a tar with manifest.json and one file per database. "
        "Check it against Repr-Digest (or the backup's sha256).",
    )
    @ns.produces([TAR])
    @ns.response(200, "The archive", headers=_DOWNLOAD_HEADERS)
    @ns.response(400, QUERY_ERROR, problem)
    @_admin_responses("No such backup; or you are not a platform administrator")
    def get(self, backup_id: uuid.UUID) -> Response:
        item, file = backup_service().open_archive(backup_id)
        name = f"taskapi-backup-{item.id}.tar"
        return _file_response(file, item.size, item.sha256, TAR, name)


@ns.route("/admin/backups/<uuid:backup_id>/restore")
@ns.param("backup_id", "The backup id (a UUID)", **_BACKUP_ID)
class BackupRestore(AdminResource):
    @requires(ns, PLATFORM_ADMIN)
    @ns.doc(
        "restore_backup",
        description="Replace every database's data with the backup's. Everything is verified "
        "first (checksums, manifest, schema revision, database set): a damaged or incompatible "
        "backup changes nothing. A safety backup of the current data is taken just before. "
        "Afterwards no move or delete is in progress: a workspace the backup caught moving or "
        "being deleted is active again, on the shard the restored directory names. Every "
        "session ends (yours too): log in again.",
    )
    @ns.response(200, "Restored; safety_backup holds the data as it was", restore_result)
    @ns.response(400, QUERY_ERROR, problem)
    @_admin_responses("No such backup; or you are not a platform administrator")
    @ns.response(
        409,
        "The backup is for another schema revision or database set; or another backup "
        "operation is running, or workspaces kept moving during the safety backup",
        problem,
    )
    @ns.response(422, "The archive is corrupt or truncated; nothing was changed", problem)
    def post(self, backup_id: uuid.UUID) -> Response:
        result = backup_service().restore(backup_id)
        return json_response(restore_to_dict(result), cache_control=WRITE_CACHE_CONTROL)


@ns.route("/workspaces/<uuid:workspace_id>/export")
@ns.param(
    "workspace_id",
    "The workspace id (a UUID)",
    format="uuid",
    **{"x-example": EXAMPLE_WORKSPACE_ID},
)
class WorkspaceExport(ApiResource):
    @requires(ns, Action.WORKSPACE_EXPORT)
    @ns.doc(
        "export_workspace",
        description="The workspace and its tasks as a versioned, checksummed archive (a "
        "gzip-compressed tar: manifest.json and tasks.jsonl), streamed. Import it with "
        "POST /api/v2/admin/workspaces/import. The workspace's owners only.",
    )
    @ns.produces([MEDIA_TYPE])
    @ns.response(200, "The archive", headers=_DOWNLOAD_HEADERS)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(401, _UNAUTHORIZED, problem)
    @ns.response(403, "Only the workspace's owners may export it", problem)
    @ns.response(404, "No such workspace (or not yours)", problem)
    def get(self, workspace_id: uuid.UUID) -> Response:
        workspace = workspace_service().get(workspace_id, Action.WORKSPACE_EXPORT)
        exported = export_workspace(
            workspace, shard_session(workspace.shard), app_version=__version__
        )
        try:
            record_admin_event(
                db.session(),
                "workspace.exported",
                "workspace",
                workspace.id,
                workspace_id=workspace.id,
                after={"tasks": exported.tasks, "sha256": exported.sha256, "size": exported.size},
            )
        except BaseException:
            exported.file.close()
            raise
        name = f"workspace-{workspace.id}.tar.gz"
        return _file_response(exported.file, exported.size, exported.sha256, MEDIA_TYPE, name)


_IMPORT_PARAMS = {
    "archive": {
        "in": "formData",
        "type": "file",
        "description": "The archive from an export (or send it as the raw body, "
        "Content-Type: application/gzip)",
    },
    "name": {
        "in": "query",
        "type": "string",
        "description": "The new workspace's name (default: the exported workspace's)",
    },
}


@ns.route("/admin/workspaces/import")
class WorkspaceImport(AdminResource):
    query_parameters = {"post": frozenset({"name"})}

    @requires(ns, PLATFORM_ADMIN)
    @ns.doc(
        "import_workspace",
        description="Create a NEW workspace from an export archive; its tasks get new ids "
        "(task ids are unique everywhere, so importing twice must not collide). All or nothing: "
        "a corrupt, truncated or invalid archive imports nothing. Up to "
        "WORKSPACE_IMPORT_MAX_BYTES, compressed and decompressed.",
        params=_IMPORT_PARAMS,
    )
    @ns.vendor({"x-consumes": ["multipart/form-data", MEDIA_TYPE]})
    @ns.response(
        201,
        "Imported; Location points at the new workspace",
        import_result,
        headers={"Location": {"type": "string", "description": "The new workspace"}},
    )
    @ns.response(
        400,
        "A query parameter is unknown, repeated or invalid (errors lists each), or the form has "
        "no archive file",
        problem,
    )
    @_admin_responses()
    @ns.response(413, "The archive is larger than WORKSPACE_IMPORT_MAX_BYTES", problem)
    @ns.response(415, "The body is neither application/gzip nor multipart/form-data", problem)
    @ns.response(
        422,
        "The archive is corrupt, truncated, of an unknown version or invalid (errors points "
        "into it: #/manifest/..., #/tasks/<line>/...); nothing was imported",
        problem,
    )
    def post(self) -> Response:
        # The parameter first: cheap, and a bad one is refused before the body is read.
        names = request.args.getlist("name")
        if len(names) > 1:  # ?name=a&name=b must not quietly mean one of them
            errors = [{"parameter": "name", "detail": "must be given once"}]
            raise ValidationProblem(errors, status=400)
        name = import_name(names[0]) if names else None
        limit = int(current_app.config["WORKSPACE_IMPORT_MAX_BYTES"])
        request.max_content_length = limit  # this route's own limit (Flask 3.1)
        with _uploaded_archive() as archive:
            # The workspace.imported audit event commits with the directory entry (in there).
            result = import_workspace(archive, workspace_service(), max_bytes=limit, name=name)
        location = f"{request.path.rsplit('/admin/', 1)[0]}/workspaces/{result.workspace.id}"
        return Response(
            dump_json(import_to_dict(result)),
            status=201,
            mimetype="application/json",
            headers={"Location": location, "Cache-Control": WRITE_CACHE_CONTROL},
        )


def _uploaded_archive() -> IO[bytes]:
    """The request's archive as a file: the form's ``archive`` file, or the raw body."""
    if request.mimetype == "multipart/form-data":
        uploaded = request.files.get("archive")
        if uploaded is None:
            raise BadRequest("The form has no file field named archive.")
        return uploaded.stream
    if request.mimetype not in _GZIP_TYPES:
        raise UnsupportedMediaType(
            f"Send the archive as {MEDIA_TYPE} (the raw body) or multipart/form-data."
        )
    spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 (the caller's)
    try:
        while chunk := request.stream.read(64 * 1024):  # over the limit: 413 from the stream
            spooled.write(chunk)
    except BaseException:
        spooled.close()
        raise
    spooled.seek(0)
    return spooled
