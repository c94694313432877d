"""Receiving uploads: the files of a request, held in memory only, never on disk.

Two kinds of request body are accepted:

- ``multipart/form-data`` (what a browser form and ``curl -F file=@x.jpeg`` send): the file
  in a field named ``file`` (``files``, repeated, for a batch), optionally a ``heatmap``
  field;
- anything else on ``POST /api/v1/predict`` is taken as the image itself (``curl
  --data-binary @x.jpeg -H 'Content-Type: image/jpeg'``); its format is told from its bytes,
  not from the header. This is the lean path for programs: no multipart framing to build
  or parse.

Multipart bodies go through Starlette's own parser (python-multipart underneath), with one
change: Starlette spools a file part over 1 MB to a temporary file on disk, and then reads
and writes it through a worker thread. Here the spool is as large as the request body may
be (the upload-limit middleware caps that before parsing), so a part never rolls over to
disk and no thread hop is needed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from pneumoscan.server.settings import MEGABYTE, ServerSettings

#: Form fields other than the files: only ``heatmap`` is read; a few more are tolerated.
MAX_FORM_FIELDS = 8
#: Largest non-file form field (``heatmap=true`` needs a few bytes).
MAX_FIELD_BYTES = 1024
#: Content types the single-image endpoint advertises for a raw body (any other non-multipart
#: body is tried as an image too; its bytes decide).
RAW_IMAGE_TYPES = ("image/jpeg", "image/png", "application/dicom", "application/octet-stream")

_BOOL = TypeAdapter(bool)


@dataclass
class ReceivedFile:
    """One uploaded file: its bytes, or the 413 it earned by being over the per-file limit."""

    filename: str
    data: bytes = b""
    too_large: bool = False
    size: int | None = None


@dataclass
class ReceivedUpload:
    """What a request carried: its files, in order, and the ``heatmap`` form field if sent."""

    files: list[ReceivedFile] = field(default_factory=list)
    heatmap: bool | None = None


class InMemoryMultiPartParser(MultiPartParser):
    """Starlette's multipart parser with every file part kept in memory."""

    def __init__(self, headers: Headers, stream: AsyncGenerator[bytes, None], *,
                 max_body_bytes: int, max_files: int) -> None:
        super().__init__(headers, stream, max_files=max_files, max_fields=MAX_FORM_FIELDS,
                         max_part_size=MAX_FIELD_BYTES)
        # A part is never larger than the body, which the middleware has capped already.
        self.spool_max_size = max_body_bytes + 1


def is_multipart(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


async def receive_upload(request: Request, settings: ServerSettings, *, file_field: str,
                         max_files: int, raw_allowed: bool) -> ReceivedUpload:
    """The files of ``request``: multipart parts named ``file_field``, or the raw body.

    Raises HTTPException 422 when the request carries no file, more than ``max_files`` or a
    malformed form, and 413 when a raw body is over the per-file limit; a multipart file over
    the limit comes back marked ``too_large`` so that a batch can report it alone.
    """
    limit = settings.max_upload_bytes
    if not is_multipart(request):
        if not raw_allowed:
            raise HTTPException(422, no_file_detail(file_field))
        data = await request.body()  # bounded by the upload-limit middleware
        if not data:
            raise HTTPException(422, no_file_detail(file_field))
        if len(data) > limit:
            raise HTTPException(413, too_large_detail(len(data), limit))
        return ReceivedUpload([ReceivedFile(filename="", data=data)])
    parser = InMemoryMultiPartParser(request.headers, request.stream(),
                                     max_body_bytes=settings.body_limit(max_files),
                                     max_files=max_files + 1)  # one over: "too many" below
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise HTTPException(422, too_many_detail(f"more than {max_files}", max_files)) \
                from None
        raise HTTPException(422, f"the multipart form is malformed: {exc.message}") from None
    upload = ReceivedUpload()
    try:
        for name, value in form.multi_items():
            if name == file_field and isinstance(value, UploadFile):
                upload.files.append(await _received(value, limit))
            elif name == "heatmap" and isinstance(value, str):
                upload.heatmap = _parse_bool("heatmap", value)
    finally:
        await form.close()
    if not upload.files:
        raise HTTPException(422, no_file_detail(file_field))
    if len(upload.files) > max_files:
        raise HTTPException(422, too_many_detail(str(len(upload.files)), max_files))
    return upload


async def _received(upload: UploadFile, limit: int) -> ReceivedFile:
    name = upload.filename or ""
    if upload.size is not None and upload.size > limit:
        return ReceivedFile(filename=name, too_large=True, size=upload.size)
    return ReceivedFile(filename=name, data=await upload.read())


def _parse_bool(name: str, value: str) -> bool:
    try:
        return _BOOL.validate_python(value)
    except ValidationError:
        raise HTTPException(422, f"form.{name}: {value[:20]!r} is not true or false") from None


def no_file_detail(file_field: str) -> str:
    if file_field == "files":
        return ("no files received: send the X-rays as multipart/form-data, each in a field "
                "named 'files'")
    return ("no file received: send the X-ray as multipart/form-data in a field named 'file', "
            "or as the request body itself (Content-Type image/jpeg, image/png or "
            "application/dicom)")


def too_many_detail(sent: str, max_files: int) -> str:
    if max_files == 1:
        return f"{sent} files sent; /predict takes one (use /predict/batch for several)"
    return f"{sent} files sent; a batch takes at most {max_files}"


def too_large_detail(size: int | None, limit: int) -> str:
    sent = f"the upload is {size / MEGABYTE:.1f} MB; " if size else "the upload is too large; "
    return (f"{sent}the limit is {limit / MEGABYTE:.1f}".removesuffix(".0") + " MB per file. "
            "Send a smaller export of the image (a JPEG or PNG of the radiograph is enough).")
